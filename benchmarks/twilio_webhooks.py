"""Twilio webhook throughput: `hotline serve` next to a bare Flask app, same WSGI server.

Starts `hotline serve` (waitress) in a subprocess on a free port with a temporary
data dir and an auth token, and a bare Flask app returning a fixed TwiML document
behind waitress with the same thread count; 32 concurrent clients send signed
incoming-call webhooks and menu webhooks (`*`, repeat the menu) over keep-alive
connections. Prints requests per second and p50/p99 latency of both, and the ratio.

    .venv/bin/python benchmarks/twilio_webhooks.py [--seconds 10] [--clients 32]
"""

from __future__ import annotations

import os
import sys

# benchmarks/numbers.py shadows the standard library's `numbers`: keep this folder off the path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import http.client  # noqa: E402
import secrets  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

from twilio.request_validator import RequestValidator  # noqa: E402

TOKEN = "bench-auth-token"
THREADS = 16

BARE_APP = """
import sys
from flask import Flask, Response
from waitress import serve
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


def client(port: int, public: str, seconds: float, latencies: list[float], errors: list[str]) -> None:
    validator = RequestValidator(TOKEN)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sid = "CA" + secrets.token_hex(16)
        base = {
            "CallSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": "+7900" + sid[-7:],
            "To": "+73435674530",
        }
        steps = [("/twilio/voice", {**base, "CallStatus": "ringing"})]
        steps += [(f"/twilio/step/digits?seq={n}", {**base, "Digits": "*"}) for n in (1, 2, 3)]
        for path, params in steps:
            body = urlencode(params)
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": validator.compute_signature(public + path, params),
            }
            started = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                data = response.read()
            except OSError as exc:
                errors.append(str(exc))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies.append(time.perf_counter() - started)
            if response.status != 200 or b"<Gather" not in data:
                errors.append(f"{response.status} {data[:120]!r}")


def measure(port: int, public: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=client, args=(port, public, seconds, latencies, errors))
        for _ in range(clients)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / elapsed, "p50": q[49] * 1000, "p99": q[98] * 1000, "n": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hotline-bench-") as data_dir:
        hot_port, bare_port = free_port(), free_port()
        public = f"http://127.0.0.1:{hot_port}"
        env = {
            **os.environ,
            "HOTLINE_DATA_DIR": data_dir,
            "HOTLINE_HTTP_PORT": str(hot_port),
            "HOTLINE_PUBLIC_URL": public,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        }
        env.pop("HOTLINE_DATABASE_URL", None)
        hotline = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from hotline.cli import main; main()",
                "serve",
                "--threads",
                str(THREADS),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port), str(THREADS)])
        try:
            wait_ready(hot_port, hotline)
            wait_ready(bare_port, bare)
            measure(hot_port, public, 4, 1.0)  # warm up both
            measure(bare_port, public, 4, 1.0)
            bare_r = measure(bare_port, public, args.clients, args.seconds)
            hot_r = measure(hot_port, public, args.clients, args.seconds)
        finally:
            for proc in (hotline, bare):
                proc.terminate()
                proc.wait(10)
    print(f"{args.clients} clients, {args.seconds:.0f} s each, waitress {THREADS} threads, SQLite (embedded)")
    for name, r in (("bare Flask  ", bare_r), ("hotline serve", hot_r)):
        rps, p50, p99 = r["rps"], r["p50"], r["p99"]
        print(f"{name}: {rps:8.1f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({r['n']:.0f} requests)")
    ratio, p99_ratio = bare_r["rps"] / hot_r["rps"], hot_r["p99"] / bare_r["p99"]
    print(f"ratio bare/hotline: {ratio:.2f}x throughput, p99 {p99_ratio:.2f}x")


if __name__ == "__main__":
    main()
