"""FastAGI load: N concurrent fake Asterisk sessions walking the status path.

Starts `hotline agi` in a subprocess (temporary data dir, SQLite by default, or
--database-url for PostgreSQL), opens a request, then runs `--rounds` waves of
`--calls` concurrent sessions that speak AGI as Asterisk does: the greeting and menu,
"1", a request number and "#", the read-back, hang up. Prints calls per second, the
p50/p99 command round-trip (Asterisk's answer sent → the next command received, so
it includes the hotline's database work), and checks that no session was lost: every
call heard its status and every call-log entry was closed.

    .venv/bin/python benchmarks/fastagi.py [--calls 500] [--rounds 2]
"""

from __future__ import annotations

import os
import sys

# benchmarks/numbers.py shadows the standard library's `numbers`: keep this folder off the path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="concurrent sessions per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

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
