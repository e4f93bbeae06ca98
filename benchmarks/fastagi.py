"""FastAGI load: N concurrent fake Asterisk sessions walking the status path, next to a
bare FastAGI app under the same load generator.

Starts `hotline agi` in a subprocess (temporary data dir, SQLite by default, or
--database-url for PostgreSQL), opens a request, then runs `--rounds` waves of
`--calls` sessions arriving at once that speak AGI as Asterisk does: the greeting and
menu, "1", a request number and "#", the read-back, hang up. The bare peer is a
panoramisk FastAGI application (no database, no call flow) that sends the very
commands the hotline sent in a first call, in the same order, so both answer the same
number of commands per call; the waves alternate between the two. Prints commands per
second, the p50/p99 time from Asterisk's answer to the next command (the silence a
caller hears, database work included) of both and their ratios, the time from the
environment to the first command (the caller still hears ringing; the hotline holds
ANSWER while a burst is being set up, see `AnswerGate`), the CPU a command of each
server's processes from /proc (the hotline's call-log children included, PostgreSQL's
backends not: steadier than a p99 on a busy machine), and checks that no
session was lost: every call heard its status and every call-log entry was closed.
A hotline wave ends when its call log is written (its writers work behind the calls):
that wait counts in its commands per second and is printed, and the bare app's next
wave never shares the machine with it.

    .venv/bin/python benchmarks/fastagi.py [--calls 500] [--rounds 2] [--database-url URL] [--by-command]
        [--processes N] [--key-gap S] [--bare-loop asyncio|uvloop]

`--bare-loop uvloop` runs the bare app on uvloop, the hotline's own event loop (by
default it runs on asyncio's, panoramisk's default).

`--processes` sets HOTLINE_AGI_PROCESSES (default: the service's own, one per core up to 4).

`--by-command` also prints the wait before each command of the call (its position and
name) for both peers: where in the call a tail comes from.

`--key-gap S` makes every caller press the keys of the request number and «#» S seconds
apart, as a person does (by default all at once); the gap is the caller's, not counted.

With --calls above 500 it raises HOTLINE_AGI_MAX_SESSIONS to match (the file-descriptor
limit of the shell must allow twice the calls).

panoramisk is a benchmark-only dependency (`pip install -e '.[bench]'`).

With `--idle N` it measures a connection flood instead: `hotline serve` (the
FastAGI server in serve's own process, HTTP in its gunicorn workers, started with the
1024 open-file soft limit systemd gives)
gets N idle sockets on its FastAGI port that never send a byte, then `--calls` real
calls while they are open, and /healthz is polled all along. Prints the calls
completed, the HTTP answers and their latency, and whether the process survived.

    .venv/bin/python benchmarks/fastagi.py --idle 2000 --calls 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from procs import tree_cpu, wait_idle
from sqlalchemy import func, select

from hotline import registry
from hotline.db import Database
from hotline.models import Call
from hotline.settings import load_settings
from ivr.asterisk.fake_agi import FakeAsterisk, Hold, Step
from ivr.asterisk.service import agi_processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BARE_APP = """
import asyncio, json, sys
from panoramisk.fast_agi import Application

COMMANDS = json.load(open(sys.argv[2]))

async def replay(request):
    for command in COMMANDS:
        await request.send_command(command)

async def main():
    app = Application()
    app.add_route("hotline", replay)
    server = await asyncio.start_server(app.handler, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    print("ready", flush=True)  # panoramisk spins on a probe connection: never connect to check
    async with server:
        await server.serve_forever()

if sys.argv[3] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


async def wait_listening(port: int, timeout: float = 60) -> None:
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


class Wave:
    """What one wave of calls gave: the round-trips, the commands, the lost calls, the time."""

    def __init__(self) -> None:
        self.round_trips: list[float] = []
        self.first_commands: list[float] = []  # environment sent → first command: still ringing
        self.by_command: dict[tuple[int, str], list[float]] = {}  # (position, command): round-trips
        self.commands = 0
        self.lost = 0
        self.elapsed = 0.0
        self.log_lag = 0.0  # the wave's last call ended → its call log written


async def wave(port: int, number: str, calls: int, tag: str, key_gap: float = 0.0) -> Wave:
    result = Wave()
    # The keys of the request number and «#», each `key_gap` seconds after the last (a
    # person's finger; 0: every key at once, as a machine would). Not counted as a wait.
    keys: list[Step] = (
        [x for key in number + "#" for x in (Hold(key_gap), key)] if key_gap else [number + "#"]
    )
    fakes = [
        FakeAsterisk(
            "127.0.0.1",
            port,
            uniqueid=f"{tag}-1700000000.{i}",  # an Asterisk uniqueid (ivr.asterisk.agi)
            callerid=f"79{abs(hash(tag)) % 100:02d}{i:07d}",
            script=["1", *keys],
        )
        for i in range(calls)
    ]
    started = time.perf_counter()
    traces = await asyncio.gather(*(f.run(timeout=300) for f in fakes), return_exceptions=True)
    result.elapsed = time.perf_counter() - started
    for trace in traces:
        if isinstance(trace, BaseException) or "hotline/ru/status_new" not in trace.heard:
            result.lost += 1
        else:
            result.round_trips.extend(trace.round_trips)
            if trace.first_command is not None:
                result.first_commands.append(trace.first_command)
            # round_trips[k]: from the answer to commands[k] until commands[k + 1] came
            for k, trip in enumerate(trace.round_trips):
                name = " ".join(trace.commands[k + 1].split()[:2])
                result.by_command.setdefault((k + 1, name), []).append(trip)
            result.commands += len(trace.commands)
    return result


def settle(db: Database, tag: str, calls: int, result: Wave, timeout: float = 300) -> None:
    """Wait until every call of the wave is closed in the call log. The hotline writes it
    behind the calls (its writers may still be at it when the last call ends): that time
    counts in its commands per second, and the bare app's next wave does not share the
    machine with it."""
    started = time.perf_counter()
    query = (
        select(func.count())
        .select_from(Call)
        .where(Call.backend_call_id.startswith(f"{tag}-"), Call.ended_at.is_not(None))
    )
    while True:
        with db.session() as session:
            if (session.scalar(query) or 0) >= calls:
                break
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"the call log of wave {tag} was not written in {timeout:.0f} s")
        time.sleep(0.01)
    result.log_lag = time.perf_counter() - started
    result.elapsed += result.log_lag


def _p(trips: list[float], q: float) -> float:
    return trips[max(0, int(len(trips) * q) - 1)] * 1000


def print_by_command(hot_waves: list[Wave], bare_waves: list[Wave]) -> None:
    """p50/p99 of the wait before each command of the call, both peers: where a tail is."""
    for name, waves in (("hotline", hot_waves), ("bare", bare_waves)):
        p99s = ", ".join(f"{_p(sorted(w.round_trips), 0.99):.0f}" for w in waves if w.round_trips)
        print(f"  {name} p99 wave by wave (ms): {p99s}")
    print("  wait before each command (ms): position, command, hotline p50/p99, bare p50/p99")
    keys = sorted({k for w in hot_waves + bare_waves for k in w.by_command})
    for key in keys:
        hot = sorted(t for w in hot_waves for t in w.by_command.get(key, []))
        bare = sorted(t for w in bare_waves for t in w.by_command.get(key, []))
        if hot and bare:
            print(
                f"    {key[0]:3d} {key[1]:<16} {_p(hot, 0.5):7.1f} {_p(hot, 0.99):7.1f}"
                f"   {_p(bare, 0.5):7.1f} {_p(bare, 0.99):7.1f}"
            )


def summary(waves: list[Wave]) -> dict[str, float]:
    trips = sorted(t for w in waves for t in w.round_trips)
    commands = sum(w.commands for w in waves)
    firsts = sorted(t for w in waves for t in w.first_commands)
    return {
        "ring50": statistics.median(firsts) * 1000 if firsts else float("nan"),
        "ring99": _p(firsts, 0.99) if firsts else float("nan"),
        "cps": commands / sum(w.elapsed for w in waves),
        "p50": statistics.median(trips) * 1000 if trips else float("nan"),
        "p99": _p(trips, 0.99) if trips else float("nan"),
        "commands": commands,
        "lost": sum(w.lost for w in waves),
    }


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
        result = await wave(agi_port, number, calls, "flood")
    finally:
        done.set()
        await poller
        for s in sockets:
            s.close()
    return Flood(len(sockets), opened, result.elapsed, result.lost, sorted(result.round_trips), answers)


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
    parser.add_argument("--calls", type=int, default=500, help="sessions arriving at once in a wave")
    parser.add_argument("--rounds", type=int, default=2, help="waves of each app")
    parser.add_argument(
        "--key-gap",
        type=float,
        default=0.0,
        help="seconds between the caller's keys of the number (default: none)",
    )
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument(
        "--by-command", action="store_true", help="also p50/p99 of the wait before each command of the call"
    )
    parser.add_argument("--idle", type=int, default=0, help="flood mode: idle sockets on the FastAGI port")
    parser.add_argument(
        "--processes", type=int, default=0, help="HOTLINE_AGI_PROCESSES (default: one per core, up to 4)"
    )
    parser.add_argument(
        "--bare-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the bare app's event loop (default: panoramisk's own, asyncio; the hotline's is uvloop)",
    )
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
        port, bare_port = free_port(), free_port()
        env = {
            **os.environ,
            "HOTLINE_DATA_DIR": data_dir,
            "HOTLINE_DATABASE_URL": url,
            "HOTLINE_AGI_PORT": str(port),
            "HOTLINE_SECRET_KEY": "bench",
            "HOTLINE_LOOKUPS_PER_HOUR": "10000",
            # Every call of a wave is taken (the default cap, 500, hands the rest back).
            "HOTLINE_AGI_MAX_SESSIONS": str(max(500, args.calls)),
            "HOTLINE_AGI_PROCESSES": str(args.processes),
        }
        processes = agi_processes(load_settings(env))  # as `hotline agi` counts them
        hotline = os.path.join(os.path.dirname(sys.executable), "hotline")
        server = subprocess.Popen([hotline, "agi"], env=env, stdout=subprocess.DEVNULL)
        bare = None
        try:
            asyncio.run(wait_listening(port))
            # One call first: the commands the bare app will replay.
            probe = FakeAsterisk("127.0.0.1", port, uniqueid="probe-1700000000.1", script=["1", number + "#"])
            commands = asyncio.run(probe.run()).commands
            assert "hotline/ru/status_new" in probe.trace.heard, "the first call did not hear its status"
            (Path(data_dir) / "bare_app.py").write_text(BARE_APP)
            (Path(data_dir) / "commands.json").write_text(json.dumps(commands))
            bare = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(data_dir) / "bare_app.py"),
                    str(bare_port),
                    f"{data_dir}/commands.json",
                    args.bare_loop,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert bare.stdout is not None and bare.stdout.readline().strip() == "ready"
            wait_idle(server)  # its workers' call-log writers start at their first call: not in a wave
            wait_idle(bare)
            hot_waves, bare_waves = [], []
            cpu = {"bare": 0.0, "hot": 0.0}  # the servers' CPU in their waves (the hotline's writers too)
            for r in range(args.rounds):  # alternate: the machine's other load falls on both alike
                start = tree_cpu(bare.pid)
                bare_waves.append(asyncio.run(wave(bare_port, number, args.calls, f"bare{r}", args.key_gap)))
                cpu["bare"] += tree_cpu(bare.pid) - start
                tag = f"{1700000000 + r}"
                start = tree_cpu(server.pid)
                hot_waves.append(asyncio.run(wave(port, number, args.calls, tag, args.key_gap)))
                settle(db, tag, args.calls, hot_waves[-1])
                cpu["hot"] += tree_cpu(server.pid) - start
        finally:
            server.terminate()
            server.wait(timeout=60)
            if bare is not None:
                bare.terminate()
                bare.wait(timeout=60)
        total = args.calls * args.rounds + 1
        with db.session() as session:
            closed = session.scalar(
                select(func.count())
                .select_from(Call)
                .where(Call.ended_at.is_not(None), Call.outcome == "status_heard")
            )
        db.dispose()
    hot, peer = summary(hot_waves), summary(bare_waves)
    database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(
        f"FastAGI, {args.calls} calls arriving at once x {args.rounds} waves each, {database}, "
        f"hotline agi in {processes} process{'es' if processes > 1 else ''}, the bare app on {args.bare_loop}"
    )
    for name, r in (("bare panoramisk", peer), ("hotline agi    ", hot)):
        print(
            f"  {name}: {r['cps']:7.0f} commands/s  answer→next command p50 {r['p50']:6.1f} ms"
            f"  p99 {r['p99']:7.1f} ms  ({r['commands']:.0f} commands, {r['lost']:.0f} calls lost)"
        )
    cps, p99 = hot["cps"] / peer["cps"], hot["p99"] / peer["p99"]
    print(f"  ratio hotline/bare: commands/s {cps:.2f}x, p99 {p99:.2f}x")
    bare_us, hot_us = (cpu[k] / r["commands"] * 1e6 for k, r in (("bare", peer), ("hot", hot)))
    print(
        f"  server CPU a command (all its processes, the call log's writes included): bare {bare_us:.0f} µs,"
        f" hotline {hot_us:.0f} µs ({hot_us / bare_us:.2f}x)"
    )
    # Not in the ratio above: the hotline holds ANSWER while a burst is set up (AnswerGate),
    # so its callers ring longer instead of hearing silence once answered; shown, not hidden.
    print(
        f"  environment→first command (still ringing): bare p50 {peer['ring50']:.1f} ms"
        f" p99 {peer['ring99']:.1f} ms; hotline p50 {hot['ring50']:.1f} ms p99 {hot['ring99']:.1f} ms"
    )
    lags = ", ".join(f"{w.log_lag * 1000:.0f}" for w in hot_waves)
    print(f"  hotline call log written after each wave's last call ended (ms, in its commands/s): {lags}")
    if args.by_command:
        print_by_command(hot_waves, bare_waves)
    print(f"  call-log entries closed: {closed - before}/{total}")
    if hot["lost"] or peer["lost"] or closed - before != total:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
