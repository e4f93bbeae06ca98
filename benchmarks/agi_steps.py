"""The FastAGI store's steps in-process, no sockets: CPU a step of the status path.

Runs waves of `--calls` calls through `LiveCallStore.run` on one event loop, as the
FastAGI sessions of a burst do (each step of every call, then the next step), and
prints the CPU of the loop's process per step (`time.process_time`, the writer child
not counted): the answer (`AGI_STARTED` logged, `CallStarted`), the menu key, the
request number's keys (read ahead at each, as the FastAGI session does, the reads'
answers awaited: the caller pressing «#»), the status lookup (the step after «#»), the
hang-up. The load of the machine
moves wall time, much less CPU time; `--profile lookup` (or another step) also prints
cProfile's top entries of that step, and `--callgrind lookup` under
`valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce`
counts that step's instructions alone, whatever the load.

    .venv/bin/python benchmarks/agi_steps.py [--calls 2000] [--waves 6] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

from hotline import registry
from hotline.db import Database
from hotline.phones import stored_phone
from hotline.settings import load_settings
from ivr import flow
from ivr.asterisk.amilog import AGI_STARTED
from ivr.asterisk.session import BACKEND
from ivr.livecalls import LiveCallStore

STEPS = ("ringing", "answer", "menu key", "number", "lookup", "hang-up")


class Meter:
    """How a step's wave is measured: CPU time, and optionally cProfile or callgrind."""

    def __init__(self, loop: asyncio.AbstractEventLoop, profiled: str | None, counted: str | None):
        self.loop = loop
        self.profiled, self.counted = profiled, counted
        self.profile = cProfile.Profile() if profiled else None

    def run(self, name: str, calls: list[Callable[[], Awaitable[object]]]) -> float:
        """CPU seconds the steps took, all of them at once on the loop (as a burst does)."""

        async def steps() -> None:
            await asyncio.gather(*(c() for c in calls))

        def wave(*_: object) -> None:
            self.loop.run_until_complete(steps())

        started = time.process_time()
        if self.profile and name == self.profiled:
            self.profile.runcall(wave)
        elif name == self.counted:
            # `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce`
            # counts the instructions of this step's waves alone.
            functools.reduce(wave, [0, 1])
        else:
            wave()
        return time.process_time() - started


def wave(store: LiveCallStore, number: str, calls: int, tag: str, meter: Meter) -> list[float]:
    ids = [f"1700{tag}.{i}" for i in range(calls)]
    callers = [f"7900{int(tag) % 1000:03d}{i:04d}" for i in range(calls)]
    cleaned: dict[str, str | None] = {}

    def ringing(call_id: str, caller: str) -> Callable[[], Awaitable[object]]:
        async def run() -> None:  # as AgiCall.run before the answer
            await store.run(store.log, call_id, AGI_STARTED, "PJSIP/trunk", uniqueid=call_id)
            cleaned[call_id] = stored_phone(caller)

        return run

    def answer(call_id: str) -> Callable[[], Awaitable[object]]:
        def run() -> Awaitable[object]:
            caller = cleaned[call_id]
            return store.run(
                store.handle, call_id, flow.CallStarted(caller), from_number=caller, to_number=None
            )

        return run

    def event(call_id: str, e: flow.Event) -> Callable[[], Awaitable[object]]:
        return lambda: store.run(store.handle, call_id, e)

    def typed(call_id: str) -> Callable[[], Awaitable[object]]:
        async def run() -> None:  # as AgiCall.gather: a read ahead at every key, answered before «#»
            for keys in range(1, len(number) + 1):
                store.read_ahead(call_id, flow.DigitsEntered(number[:keys]))
            ahead = store._calls[call_id].ahead
            if ahead is not None:
                await asyncio.gather(*ahead[2].values())

        return run

    def hang_up(call_id: str) -> Callable[[], Awaitable[object]]:
        return lambda: store.run(
            store.hang_up, call_id, backend_status="completed", hangup_cause="caller hung up"
        )

    steps = [
        [ringing(c, n) for c, n in zip(ids, callers, strict=True)],
        [answer(c) for c in ids],
        [event(c, flow.DigitsEntered("1")) for c in ids],
        [typed(c) for c in ids],
        [event(c, flow.DigitsEntered(number + "#")) for c in ids],
        [hang_up(c) for c in ids],
    ]
    return [meter.run(name, s) for name, s in zip(STEPS, steps, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--waves", type=int, default=6)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    parser.add_argument("--gc", action="store_true", help="leave the collector on (as `hotline agi` does)")
    parser.add_argument("--profile", choices=STEPS, help="cProfile this step (every wave)")
    parser.add_argument(
        "--callgrind", choices=STEPS, help="run this step inside functools.reduce (see Meter)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hotline-agi-steps-") as data_dir:
        url = args.database_url or f"sqlite:///{data_dir}/hotline.sqlite3"
        db = Database(url)
        db.upgrade()
        with db.session() as session:
            number = registry.open_request(session, kind="incident", channel="web", actor="system").number
        settings = load_settings(
            {
                "HOTLINE_DATA_DIR": data_dir,
                "HOTLINE_DATABASE_URL": url,
                "HOTLINE_SECRET_KEY": "bench",
                "HOTLINE_LOOKUPS_PER_HOUR": "10000",
            }
        )
        store = LiveCallStore(db, settings, BACKEND)
        gc.freeze()
        if not args.gc:
            gc.disable()
        per_step: list[list[float]] = [[] for _ in STEPS]
        loop = asyncio.new_event_loop()
        meter = Meter(loop, args.profile, args.callgrind)
        try:
            for w in range(args.waves):
                cpu = wave(store, number, args.calls, f"{w:03d}", meter)
                for i, seconds in enumerate(cpu):
                    per_step[i].append(seconds / args.calls * 1e6)
                store.flush()
        finally:
            store.close()
            loop.close()
            db.dispose()
    collector = "on" if args.gc else "off"
    print(f"CPU a step, µs ({args.calls} calls a wave, {args.waves} waves, collector {collector}):")
    for name, values in zip(STEPS, per_step, strict=True):
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:9s} median {statistics.median(values):6.1f}  ({shown})")
    if meter.profile:
        stats = pstats.Stats(meter.profile).sort_stats(os.environ.get("SORT", "tottime"))
        stats.print_stats(int(os.environ.get("TOP", "25")))


if __name__ == "__main__":
    main()
