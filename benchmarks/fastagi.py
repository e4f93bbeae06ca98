"""FastAGI load: N concurrent fake Asterisk sessions walking the status path.

Starts `hotline agi` in a subprocess (temporary data dir, SQLite by default, or
--database-url for PostgreSQL), opens a request, then runs `--rounds` waves of
`--calls` concurrent sessions that speak AGI as Asterisk does: the greeting and menu,
"1", a request number and "#", the read-back, hang up. Prints calls per second, the
p50/p99 command round-trip (Asterisk's answer sent → the next command received, so
it includes the hotline's database work), and checks that no session was lost: every
call heard its status and every call-log entry was closed.

    .venv/bin/python benchmarks/fastagi.py [--calls 500] [--rounds 2]

With `--idle N` it measures a connection flood instead: `hotline serve` (single
process, HTTP on waitress, started with the 1024 open-file soft limit systemd gives)
gets N idle sockets on its FastAGI port that never send a byte, then `--calls` real
calls while they are open, and /healthz is polled all along. Prints the calls
completed, the HTTP answers and their latency, and whether the process survived.

    .venv/bin/python benchmarks/fastagi.py --idle 2000 --calls 50
"""

from __future__ import annotations

import os
import sys

# benchmarks/numbers.py shadows the standard library's `numbers`: keep this folder off the path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from sqlalchemy import func, select  # noqa: E402

from hotline import registry  # noqa: E402
from hotline.db import Database  # noqa: E402
from hotline.models import Call  # noqa: E402
from ivr.asterisk.fake_agi import FakeAsterisk  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("hotline agi did not start") from None
            await asyncio.sleep(0.1)


async def run_load(port: int, number: str, calls: int, rounds: int) -> tuple[float, list[float], int]:
    round_trips: list[float] = []
    lost = 0
    started = time.perf_counter()
    for r in range(rounds):
        fakes = [
            FakeAsterisk(
                "127.0.0.1",
                port,
                uniqueid=f"{1700000000 + r}.{i}",
                callerid=f"79{r:02d}{i:07d}",
                script=["1", number + "#"],
            )
            for i in range(calls)
        ]
        results = await asyncio.gather(*(f.run(timeout=300) for f in fakes), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) or "hotline/ru/status_new" not in result.heard:
                lost += 1
            else:
                round_trips.extend(result.round_trips)
    return time.perf_counter() - started, round_trips, lost


def _systemd_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))


def _healthz(port: int) -> float | None:
    """Seconds /healthz took to answer 200, None if it did not."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            return time.perf_counter() - started if resp.status == 200 else None
    except (OSError, urllib.error.HTTPError):
        return None


@dataclass
class Flood:
    idle: int  # idle sockets actually opened
    opened_s: float
    elapsed: float  # seconds the real calls took
    lost: int
    trips: list[float]
    http: list[float | None]  # /healthz latencies during the flood, None: no 200


async def run_flood(agi_port: int, http_port: int, number: str, idle: int, calls: int) -> Flood:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, idle + calls + 1000)), hard))
    sockets: list[socket.socket] = []
    opened_at = time.perf_counter()
    for _ in range(idle):  # bounded: N sockets that never send a byte
        try:
            sockets.append(socket.create_connection(("127.0.0.1", agi_port), timeout=10))
        except OSError:
            break
    opened = time.perf_counter() - opened_at
    answers: list[float | None] = []
    done = asyncio.Event()

    async def poll_http() -> None:
        while not done.is_set():
            answers.append(await asyncio.to_thread(_healthz, http_port))
            await asyncio.sleep(0.2)

    poller = asyncio.create_task(poll_http())
    try:
        elapsed, trips, lost = await run_load(agi_port, number, calls, 1)
    finally:
        done.set()
        await poller
        for s in sockets:
            s.close()
    return Flood(len(sockets), opened, elapsed, lost, sorted(trips), answers)


def flood(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="hotline-agi-flood-") as data_dir:
        url = f"sqlite:///{data_dir}/hotline.sqlite3"
        db = Database(url)
        db.upgrade()
        with db.session() as session:
            number = registry.open_request(session, kind="incident", channel="web", actor="system").number
        db.dispose()
        agi_port, http_port = free_port(), free_port()
        env = {
            **os.environ,
            "HOTLINE_DATA_DIR": data_dir,
            "HOTLINE_DATABASE_URL": url,
            "HOTLINE_AGI_PORT": str(agi_port),
            "HOTLINE_HTTP_PORT": str(http_port),
            "HOTLINE_SECRET_KEY": "bench",
            "HOTLINE_LOOKUPS_PER_HOUR": "10000",
            "HOTLINE_ASR": "fake",
            "HOTLINE_TRANSCRIPTION_WORKERS": "0",
        }
        hotline = os.path.join(os.path.dirname(sys.executable), "hotline")
        server = subprocess.Popen(
            [hotline, "serve"], env=env, stdout=subprocess.DEVNULL, preexec_fn=_systemd_fd_limit
        )
        try:
            asyncio.run(wait_listening(agi_port))
            result = asyncio.run(run_flood(agi_port, http_port, number, args.idle, args.calls))
            after = _healthz(http_port)
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=90)
    ok = sorted(t for t in result.http if t is not None)
    print(f"FastAGI flood on `hotline serve`: {result.idle} idle sockets (opened in {result.opened_s:.1f} s)")
    print(f"  real calls completed: {args.calls - result.lost}/{args.calls} in {result.elapsed:.1f} s")
    if result.trips:
        p50, worst = statistics.median(result.trips) * 1000, result.trips[-1] * 1000
        print(f"  command round-trip: p50 {p50:.1f} ms, max {worst:.1f} ms")
    median = f"{statistics.median(ok) * 1000:.0f} ms" if ok else "-"
    print(f"  HTTP /healthz during the flood: {len(ok)}/{len(result.http)} answered 200, median {median}")
    after_text = "200" if after is not None else "no answer"
    print(f"  after the flood: /healthz {after_text}; process {'alive' if alive else 'DEAD'}")
    if result.lost or not alive or after is None or len(ok) != len(result.http):
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="concurrent sessions per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--idle", type=int, default=0, help="flood mode: idle sockets on the FastAGI port")
    args = parser.parse_args()
    if args.idle:
        flood(args)
        return

    with tempfile.TemporaryDirectory(prefix="hotline-agi-bench-") as data_dir:
        url = args.database_url or f"sqlite:///{data_dir}/hotline.sqlite3"
        db = Database(url)
        db.upgrade()
        with db.session() as session:
            number = registry.open_request(session, kind="incident", channel="web", actor="system").number
            before = session.scalar(select(func.count()).select_from(Call)) or 0
        port = free_port()
        env = {
            **os.environ,
            "HOTLINE_DATA_DIR": data_dir,
            "HOTLINE_DATABASE_URL": url,
            "HOTLINE_AGI_PORT": str(port),
            "HOTLINE_SECRET_KEY": "bench",
            "HOTLINE_LOOKUPS_PER_HOUR": "10000",
        }
        hotline = os.path.join(os.path.dirname(sys.executable), "hotline")
        server = subprocess.Popen([hotline, "agi"], env=env, stdout=subprocess.DEVNULL)
        try:
            asyncio.run(wait_listening(port))
            elapsed, trips, lost = asyncio.run(run_load(port, number, args.calls, args.rounds))
        finally:
            server.terminate()
            server.wait(timeout=60)
        total = args.calls * args.rounds
        with db.session() as session:
            closed = session.scalar(
                select(func.count())
                .select_from(Call)
                .where(Call.ended_at.is_not(None), Call.outcome == "status_heard")
            )
        db.dispose()
    trips.sort()
    p99 = trips[int(len(trips) * 0.99) - 1] * 1000 if trips else float("nan")
    p50 = statistics.median(trips) * 1000 if trips else float("nan")
    print(f"FastAGI, {args.calls} concurrent sessions x {args.rounds} rounds on {url.split(':')[0]}")
    print(f"  calls/s: {total / elapsed:.1f}   ({total} calls in {elapsed:.1f} s)")
    print(f"  command round-trip: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(trips)} commands")
    print(f"  sessions lost: {lost}; call-log entries closed: {closed - before}/{total}")
    if lost or closed - before != total:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
