"""Requests opened per second with 16 concurrent writers, SQLite and PostgreSQL side by side.

    .venv/bin/python benchmarks/request_numbers.py [--requests 2000] [--postgres URL]

Each backend gets a fresh database (PostgreSQL: created and dropped on the server).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from hotline import registry
from hotline.db import Database, scratch_postgres

WRITERS = 16


def measure(db: Database, total: int) -> float:
    per_writer = total // WRITERS

    def writer(w: int) -> list[str]:
        out = []
        for i in range(per_writer):
            with db.session() as s:
                out.append(
                    registry.open_request(
                        s, kind="incident", channel="web", actor=f"bench:{w}", subject=str(i)
                    ).number
                )
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(WRITERS) as pool:
        numbers = [n for chunk in pool.map(writer, range(WRITERS)) for n in chunk]
    elapsed = time.perf_counter() - start
    assert len(set(numbers)) == len(numbers) == per_writer * WRITERS, "duplicate numbers!"
    return len(numbers) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("HOTLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.sqlite3", pool_size=WRITERS)
        db.upgrade()
        results["SQLite (WAL)"] = measure(db, args.requests)
        db.dispose()
    with scratch_postgres(args.postgres, "hotline_bench") as url:
        db = Database(url, pool_size=WRITERS)
        db.upgrade()
        results["PostgreSQL"] = measure(db, args.requests)
        db.dispose()
    print(f"requests opened per second, {WRITERS} concurrent writers, {args.requests} requests each backend")
    for backend, rate in results.items():
        print(f"  {backend:<14} {rate:8.0f} req/s")


if __name__ == "__main__":
    main()
