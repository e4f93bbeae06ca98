"""Twilio webhook throughput: `hotline serve` next to a bare Flask app, same WSGI server.

Starts `hotline serve` in a subprocess on a free port with a temporary data dir and
an auth token, and a bare Flask app returning a fixed TwiML document under the same
server with the same processes and threads: `--workers 1` is waitress in one process
(what `hotline serve` runs by default), `--workers N` is gunicorn's gthread workers
(what `hotline serve --workers N` runs). 32 concurrent clients send signed
incoming-call webhooks and menu webhooks (`*`, repeat the menu) over keep-alive
connections, in turns that alternate between the two apps. The clients are one
asyncio process writing pre-encoded requests on raw sockets (a few tens of
microseconds of CPU a request, on the same cores as the servers). Prints requests
per second and p50/p99 latency of both, and the ratio.

    .venv/bin/python benchmarks/twilio_webhooks.py [--seconds 10] [--clients 32] [--workers 2] [--threads 4]
"""

from __future__ import annotations

import os
import sys

# benchmarks/numbers.py shadows the standard library's `numbers`: keep this folder off the path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import http.client  # noqa: E402
import secrets  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

from web.cli import gunicorn_command  # noqa: E402

TOKEN = "bench-auth-token"

BARE_APP = """
import sys
from flask import Flask, Response
app = Flask("bare")
TWIML = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="http://x/twilio/step/digits?seq=1" '
         'numDigits="1" timeout="6"><Say language="ru-RU">Чтобы узнать статус заявки, нажмите 1.</Say>'
         '</Gather><Redirect>http://x/twilio/step/timeout?seq=1</Redirect></Response>')
@app.post("/twilio/voice")
@app.post("/twilio/step/digits")
def twiml():
    return Response(TWIML, mimetype="text/xml")
@app.get("/healthz")
def healthz():
    return "ok"
if __name__ == "__main__":
    from waitress import serve
    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=int(sys.argv[2]), _quiet=True)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not start in {timeout} s")


def signature(url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio computes it (the server checks it with the twilio package)."""
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def call_requests(port: int, public: str) -> list[bytes]:
    """The webhooks of one new call, as raw HTTP/1.1 requests."""
    sid = "CA" + secrets.token_hex(16)
    base = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+7900" + sid[-7:], "To": "+73435674530"}
    steps = [("/twilio/voice", {**base, "CallStatus": "ringing"})]
    steps += [(f"/twilio/step/digits?seq={n}", {**base, "Digits": "*"}) for n in (1, 2, 3)]
    out = []
    for path, params in steps:
        body = urlencode(params)
        out.append(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"X-Twilio-Signature: {signature(public + path, params)}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}"
            ).encode()
        )
    return out


async def client(port: int, public: str, deadline: float, latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < deadline:
            for request in call_requests(port, public):
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 200") or b"<Gather" not in body:
                    errors.append(f"{head[:40]!r} {body[:120]!r}")
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(repr(exc))
    finally:
        writer.close()


Run = tuple[list[float], float, list[str], float]


def measure(port: int, public: str, clients: int, seconds: float) -> Run:
    """Latencies of every request, the elapsed time, the errors and the clients' CPU time of one run."""
    latencies: list[float] = []
    errors: list[str] = []

    async def run() -> float:
        started = time.perf_counter()
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(client(port, public, deadline, latencies, errors) for _ in range(clients)))
        return time.perf_counter() - started

    cpu = time.process_time()
    elapsed = asyncio.run(run())
    return latencies, elapsed, errors, time.process_time() - cpu


def summary(runs: list[Run]) -> dict[str, float]:
    latencies = [x for run in runs for x in run[0]]
    errors = [e for run in runs for e in run[2]]
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    q = statistics.quantiles(latencies, n=100)
    elapsed = sum(run[1] for run in runs)
    n = len(latencies)
    client_cpu = sum(run[3] for run in runs) / n * 1e6
    return {"rps": n / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000, "n": n, "client_us": client_cpu}


def bare_command(app_dir: Path, port: int, workers: int, threads: int) -> list[str]:
    """The bare app under the server `hotline serve --workers` uses for this many workers."""
    if workers == 1:
        return [sys.executable, str(app_dir / "bare_app.py"), str(port), str(threads)]
    return gunicorn_command("bare_app:app", f"127.0.0.1:{port}", workers, threads, f"--chdir={app_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="HTTP processes of both apps (1: waitress)")
    parser.add_argument("--threads", type=int, default=4, help="HTTP threads per process of both apps")
    parser.add_argument("--rounds", type=int, default=5, help="alternating turns the seconds are split into")
    parser.add_argument(
        "--database-url", help="hotline's database (default: SQLite in the temporary data dir)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hotline-bench-") as tmp:
        data_dir = Path(tmp)
        (data_dir / "bare_app.py").write_text(BARE_APP)
        hot_port, bare_port = free_port(), free_port()
        public = f"http://127.0.0.1:{hot_port}"
        env = {
            **os.environ,
            "HOTLINE_DATA_DIR": str(data_dir),
            "HOTLINE_HTTP_PORT": str(hot_port),
            "HOTLINE_AGI_PORT": str(free_port()),  # never the operator's own FastAGI port
            "HOTLINE_PUBLIC_URL": public,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        }
        env.pop("HOTLINE_DATABASE_URL", None)
        if args.database_url:
            env["HOTLINE_DATABASE_URL"] = args.database_url
        serve = ["serve", f"--threads={args.threads}", f"--workers={args.workers}"]
        with open(data_dir / "hotline.log", "wb") as log:
            hotline = subprocess.Popen(
                [sys.executable, "-c", "from hotline.cli import main; main()", *serve],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            bare = subprocess.Popen(
                bare_command(data_dir, bare_port, args.workers, args.threads),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_ready(hot_port, hotline)
                wait_ready(bare_port, bare)
                measure(hot_port, public, 4, 1.0)  # warm up both
                measure(bare_port, public, 4, 1.0)
                # Short turns one after the other: the machine's other load falls on both alike.
                bare_runs, hot_runs = [], []
                for _ in range(args.rounds):
                    bare_runs.append(measure(bare_port, public, args.clients, args.seconds / args.rounds))
                    hot_runs.append(measure(hot_port, public, args.clients, args.seconds / args.rounds))
                bare_r, hot_r = summary(bare_runs), summary(hot_runs)
            except BaseException:
                print((data_dir / "hotline.log").read_text(errors="replace")[-3000:], file=sys.stderr)
                raise
            finally:
                for proc in (hotline, bare):
                    proc.terminate()
                    proc.wait(30)
    server = "waitress, 1 process" if args.workers == 1 else f"gunicorn gthread, {args.workers} processes"
    database = "PostgreSQL" if args.database_url else "SQLite (embedded)"
    turns = f"{args.seconds:.0f} s each in {args.rounds} turns"
    print(f"{args.clients} clients, {turns}, {server} x {args.threads} threads, {database}")
    for name, r in (("bare Flask  ", bare_r), ("hotline serve", hot_r)):
        rps, p50, p99 = r["rps"], r["p50"], r["p99"]
        print(
            f"{name}: {rps:8.1f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({r['n']:.0f} requests, "
            f"client CPU {r['client_us']:.0f} µs each)"
        )
    ratio, p99_ratio = bare_r["rps"] / hot_r["rps"], hot_r["p99"] / bare_r["p99"]
    print(f"ratio bare/hotline: {ratio:.2f}x throughput, p99 {p99_ratio:.2f}x")


if __name__ == "__main__":
    main()
