"""AMI figures: events parsed per second, calls logged per second, call-back latency.

    .venv/bin/python benchmarks/ami.py [--calls 300] [--callbacks 20]

Everything over loopback against the fake AMI server, on an embedded SQLite database
in a temporary folder: the AMI call log as `hotline serve` runs it, and call-backs
queued as the dashboard does and placed by the AMI service.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from hotline import registry
from hotline.db import Database
from hotline.models import Call, RequestEvent
from hotline.settings import load_settings
from ivr.asterisk import callback as callbacks
from ivr.asterisk.amievents import parse_event
from ivr.asterisk.fake_ami import FakeAmiServer, incoming_call_events
from ivr.asterisk.service import AmiService


def parse_rate(rounds: int = 20_000) -> float:
    events = incoming_call_events("1700000000.1", answered=True)
    start = time.perf_counter()
    for _ in range(rounds):
        for event in events:
            parse_event(event)
    return rounds * len(events) / (time.perf_counter() - start)


def wait(predicate, seconds: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--callbacks", type=int, default=20)
    args = parser.parse_args()

    print(f"parse_event: {parse_rate():,.0f} events/s")
    with tempfile.TemporaryDirectory() as tmp:
        server = FakeAmiServer().start()
        settings = load_settings(
            {
                "HOTLINE_DATA_DIR": str(Path(tmp) / "data"),
                "HOTLINE_SECRET_KEY": "bench",
                "HOTLINE_AMI_URL": server.url,
            }
        )
        db = Database(settings.database_url)
        db.upgrade()
        service = AmiService(settings, db)
        service.start()
        service.connection.wait_connected(10)
        try:

            def logged() -> int:
                with db.session() as s:
                    return s.scalar(select(func.count(Call.id)).where(Call.ended_at.is_not(None))) or 0

            start = time.perf_counter()
            for n in range(args.calls):
                server.emit(*incoming_call_events(f"1700000000.{n}"))
            wait(lambda: logged() >= args.calls)
            elapsed = time.perf_counter() - start
            rate = args.calls / elapsed
            print(f"AMI call log: {args.calls} calls (4 events each) in {elapsed:.2f} s = {rate:.0f} calls/s")

            with db.session() as s:
                number = registry.open_request(
                    s, kind="incident", channel="phone", actor="bench", phone="+79001234567", subject="x"
                ).number
            latencies = []
            for _ in range(args.callbacks):
                before = len(server.named("Originate"))
                asked = time.time()
                with db.session() as s:
                    callbacks.queue_call_back(settings, s, number, "PJSIP/101", actor="bench")
                wait(lambda: len(server.named("Originate")) > before)  # noqa: B023
                latencies.append(server.received_at[server.named("Originate")[-1].action_id] - asked)

            def entries() -> int:
                with db.session() as s:
                    return (
                        s.scalar(select(func.count(RequestEvent.id)).where(RequestEvent.action == "callback"))
                        or 0
                    )

            wait(lambda: entries() >= args.callbacks)
            print(
                f"call-back, queued to Originate: median {statistics.median(latencies) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms over {args.callbacks}; "
                f"AMI logins: {len(server.named('Login'))}"
            )
        finally:
            service.stop()
            server.stop()


if __name__ == "__main__":
    main()
