"""Twilio webhooks: `hotline serve` next to a bare Flask TwiML app, same server, same load.

Starts `hotline serve` in a subprocess on a free port with a temporary data dir and an
auth token, and a bare Flask app returning a fixed TwiML document under the same
gunicorn command `serve` uses, with the same processes and threads (`--workers`,
`--threads`). The clients send signed incoming-call webhooks and menu webhooks (`*`,
repeat the menu) over keep-alive connections, from one asyncio process writing
pre-encoded requests on raw sockets (a few tens of microseconds of CPU a request, on
the same cores as the servers); a client connects again after an answer with
`Connection: close`, as an HTTP client does. Measuring starts once `serve` and its
children (FastAGI workers, the warm CLI helper) have finished starting and are idle.
Runs on SQLite and on PostgreSQL (a database made on `--postgres` for the run and
dropped after), or on one with `--databases`.

Two measurements, each in short turns alternating between the two apps, so that the
machine's other load falls on both alike:

- **Saturated** (closed loop): 32 clients each send the next request as soon as the
  last is answered. Gives the most requests per second each app can answer, and the
  ratio bare/hotline. Latency here is mostly queueing: with every client always
  waiting, p99 is what the server's queue makes it (the bare app's own is high too).
  A hotline turn ends when its call log is written as well (the writer may run behind
  the webhooks; a flush on its socket waits for it): the time counts.
- **Fixed rate** (open loop): the same 32 connections send at a fixed total rate
  (`--rate`, by default a quarter and a half of the hotline's saturated rate in this
  run, which both apps can hold), each request at its scheduled time. Latency is
  measured from the scheduled time, not from the moment it could be sent: a request
  that waited for a slow answer before it counts its wait (no "coordinated omission").
  This is the latency a caller gets at that load; p50 and p99 of both apps are
  printed. The asyncio timer wakes up to about 1 ms late, which adds to both apps alike.

Each line also gives the server's CPU time a request: the app's process and every
process under it (gunicorn's workers; the hotline's call-log writer), read from /proc
around each turn. It rises as the load falls, for both apps: a request that finds its
threads asleep pays for waking them.

    .venv/bin/python benchmarks/twilio_webhooks.py [--seconds 10] [--clients 32] [--workers 2]
        [--threads 4] [--rate N[,N...]] [--databases sqlite,postgres] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import html
import http.client
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from procs import tree_cpu, wait_idle

from hotline.db import scratch_postgres
from hotline.settings import host_run_dir
from ivr.twilio import behind
from web.cli import gunicorn_command

TOKEN = "bench-auth-token"

BARE_APP = """
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


class Call:
    """One new call's webhooks as Twilio sends them: the incoming call, then three menu
    keys (`*`), each to the Gather's action URL of the answer before (that URL carries
    the call's step and, for the hotline, its state), signed as Twilio signs it."""

    def __init__(self, port: int, public: str):
        self.port, self.public = port, public
        sid = "CA" + secrets.token_hex(16)
        self.form = {
            "CallSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": "+7900" + sid[-7:],
            "To": "+73435674530",
        }
        self.next: bytes | None = self.request("/twilio/voice", {**self.form, "CallStatus": "ringing"})
        self.keys = 3

    def request(self, path: str, params: dict[str, str]) -> bytes:
        body = urlencode(params)
        return (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {signature(self.public + path, params)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def answered(self, body: bytes) -> None:
        """The answer to the last request: the next one goes to its Gather's action."""
        found = ACTION.search(body)
        if self.keys == 0 or found is None:
            self.next = None
            return
        url = urlsplit(html.unescape(found.group(1).decode()))
        self.next = self.request(f"{url.path}?{url.query}", {**self.form, "Digits": "*"})
        self.keys -= 1


ACTION = re.compile(rb'<Gather[^>]* action="([^"]+)"')


class Connection:
    """A keep-alive connection as an HTTP client keeps one: opened again after an answer
    that says `Connection: close` (gunicorn closes some when a worker holds many)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def exchange(self, call: Call) -> str | None:
        """Send the call's next request, read its answer; an error text if it was not the TwiML expected."""
        assert call.next is not None
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened += 1
        assert self.reader is not None
        self.writer.write(call.next)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length, close = 0, False
        for line in head.split(b"\r\n"):
            name = line[:15].lower()
            if name == b"content-length:":
                length = int(line[15:])
            elif name.startswith(b"connection:"):
                close = b"close" in line.lower()
        body = await self.reader.readexactly(length)
        if close:
            self.close()
        call.answered(body)
        if not head.startswith(b"HTTP/1.1 200") or b"<Gather" not in body:
            call.next = None
            return f"{head[:40]!r} {body[:120]!r}"
        return None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def client(
    connection: Connection, public: str, deadline: float, latencies: list[float], errors: list[str]
) -> None:
    """Closed loop: the next request as soon as the last is answered."""
    try:
        while time.monotonic() < deadline:
            call = Call(connection.port, public)
            while call.next is not None:
                started = time.perf_counter()
                error = await connection.exchange(call)
                latencies.append(time.perf_counter() - started)
                if error:
                    errors.append(error)
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(repr(exc))
    finally:
        connection.close()


async def paced_client(
    connection: Connection,
    public: str,
    first: float,
    period: float,
    end: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    """Open loop: a request every `period` seconds from `first`, each timed from its scheduled moment."""
    scheduled = first
    try:
        while scheduled < end:
            call = Call(connection.port, public)
            while call.next is not None and scheduled < end:
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                error = await connection.exchange(call)
                latencies.append(time.perf_counter() - scheduled)
                if error:
                    errors.append(error)
                scheduled += period
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(repr(exc))
    finally:
        connection.close()


Run = tuple[list[float], float, list[str], float, int, float]


def measure(
    server: subprocess.Popen[bytes],
    port: int,
    public: str,
    clients: int,
    seconds: float,
    rate: float | None = None,
    settle: Callable[[], None] | None = None,
) -> Run:
    """Latencies of every request, the elapsed time, the errors, the clients' CPU time, the
    connections they opened and the server's CPU time (its whole process tree), of one
    run: closed loop, or open loop at `rate` requests per second. `settle` runs after the
    requests, its time counted in the elapsed time and the server's CPU."""
    latencies: list[float] = []
    errors: list[str] = []
    connections = [Connection(port) for _ in range(clients)]

    async def run() -> float:
        started = time.perf_counter()
        if rate is None:
            deadline = time.monotonic() + seconds
            runs: list[Awaitable[None]] = [
                client(connection, public, deadline, latencies, errors) for connection in connections
            ]
        else:
            period = clients / rate  # each client's; the clients are spread evenly over one period
            first, end = started + 0.05, started + 0.05 + seconds
            runs = [
                paced_client(c, public, first + i * period / clients, period, end, latencies, errors)
                for i, c in enumerate(connections)
            ]
        await asyncio.gather(*runs)
        return time.perf_counter() - started

    cpu, server_cpu = time.process_time(), tree_cpu(server.pid)
    elapsed = asyncio.run(run())
    if settle is not None:
        started = time.perf_counter()
        settle()
        elapsed += time.perf_counter() - started
    client_cpu, server_cpu = time.process_time() - cpu, tree_cpu(server.pid) - server_cpu
    return latencies, elapsed, errors, client_cpu, sum(c.opened for c in connections), server_cpu


def written(logged: behind.LogQueue) -> Callable[[], None]:
    """A hotline turn lasts until its call log is written too: the writer may run behind
    the webhooks (a worker's connection to it holds ~1 MB), and requests answered
    but not logged yet are no throughput."""

    def settle() -> None:
        if not logged.flush(120):
            raise SystemExit("the call log was not written within 120 s")

    return settle


def summary(runs: list[Run]) -> dict[str, float]:
    latencies = [x for run in runs for x in run[0]]
    errors = [e for run in runs for e in run[2]]
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}", file=sys.stderr)
    q = statistics.quantiles(latencies, n=100)
    elapsed = sum(run[1] for run in runs)
    n = len(latencies)
    client_cpu = sum(run[3] for run in runs) / n * 1e6
    opened = sum(run[4] for run in runs)
    server_cpu = sum(run[5] for run in runs) / n * 1e6
    return {
        "rps": n / elapsed,
        "p50": q[49] * 1000,
        "p99": q[98] * 1000,
        "n": n,
        "client_us": client_cpu,
        "opened": opened,
        "server_us": server_cpu,
    }


def bare_command(app_dir: Path, port: int, workers: int, threads: int) -> list[str]:
    """The bare app under the server `hotline serve` runs."""
    return gunicorn_command("bare_app:app", f"127.0.0.1:{port}", workers, threads, f"--chdir={app_dir}")


def alternate(
    bare: Callable[[], Run], hot: Callable[[], Run], rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Short turns one after the other: the machine's other load falls on both alike."""
    bare_runs, hot_runs = [], []
    for _ in range(rounds):
        bare_runs.append(bare())
        hot_runs.append(hot())
    return summary(bare_runs), summary(hot_runs)


def bench(args: argparse.Namespace, database_url: str | None) -> None:
    """Both measurements against one database (None: SQLite in the data dir)."""
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
        if database_url:
            env["HOTLINE_DATABASE_URL"] = database_url
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
                wait_idle(hotline)
                wait_idle(bare)
                measure(hotline, hot_port, public, 4, 1.0)  # warm up both
                measure(bare, bare_port, public, 4, 1.0)
                turn = args.seconds / args.rounds
                sock = host_run_dir(data_dir) / behind.SOCKET_NAME
                if not sock.exists():  # else every wait for the call log would pass at once
                    raise SystemExit(f"no call-log writer socket at {sock}")
                logged = written(behind.LogQueue(sock))

                def both(rate: float | None) -> tuple[dict[str, float], dict[str, float]]:
                    return alternate(
                        lambda: measure(bare, bare_port, public, args.clients, turn, rate),
                        lambda: measure(hotline, hot_port, public, args.clients, turn, rate, logged),
                        args.rounds,
                    )

                saturated = both(None)
                capacity = saturated[1]["rps"]
                rates = args.rate or [max(1.0, round(capacity * share, -1)) for share in (0.25, 0.5)]
                fixed = [(rate, both(rate)) for rate in rates]
            except BaseException:
                print((data_dir / "hotline.log").read_text(errors="replace")[-3000:], file=sys.stderr)
                raise
            finally:
                for proc in (hotline, bare):
                    proc.terminate()
                    proc.wait(30)
    database = "PostgreSQL" if database_url else "SQLite (embedded)"
    server = f"gunicorn gthread, {args.workers} processes x {args.threads} threads"
    turns = f"{args.seconds:.0f} s a measurement in {args.rounds} turns"
    print(f"{database}: {args.clients} clients, {server}, {turns}")
    print("  saturated (closed loop):")
    for name, r in zip(("bare Flask   ", "hotline serve"), saturated, strict=True):
        print(
            f"    {name}: {r['rps']:7.1f} req/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  "
            f"server CPU {r['server_us']:4.0f} µs a request  ({r['n']:.0f} requests on "
            f"{r['opened']:.0f} connections, client CPU {r['client_us']:.0f} µs each)"
        )
    print(f"    ratio bare/hotline: {saturated[0]['rps'] / saturated[1]['rps']:.2f}x requests per second")
    for rate, results in fixed:
        share = rate / capacity
        print(
            f"  at a fixed rate of {rate:.0f} req/s, {share:.0%} of the hotline's saturated rate (open loop):"
        )
        for name, r in zip(("bare Flask   ", "hotline serve"), results, strict=True):
            print(
                f"    {name}: {r['rps']:7.1f} req/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  "
                f"server CPU {r['server_us']:4.0f} µs a request"
            )
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="of each measurement and app")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="HTTP processes of both apps")
    parser.add_argument("--threads", type=int, default=4, help="HTTP threads per process of both apps")
    parser.add_argument("--rounds", type=int, default=5, help="alternating turns the seconds are split into")
    parser.add_argument(
        "--rate",
        type=lambda text: [float(rate) for rate in text.split(",")],
        help="requests per second of the open loop, N[,N...] (default: a quarter and a half of "
        "the hotline's saturated rate)",
    )
    parser.add_argument("--databases", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("HOTLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="server where a database is made for the run (and dropped after)",
    )
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for database in args.databases.split(","):
        if database == "sqlite":
            bench(args, None)
        elif database == "postgres":
            with scratch_postgres(args.postgres, "hotline_bench") as url:
                bench(args, url)
        else:
            parser.error(f"unknown database {database!r}")


if __name__ == "__main__":
    main()
