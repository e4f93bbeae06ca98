"""Word-form search of requests: building the index and searching it, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/search.py [--requests 20000] [--rounds 30] [--postgres URL]

Fills a fresh database with requests and history (Core bulk inserts), times
`rebuild_index` (what migration 0004 does for existing rows), then the request search
with the word match and without it (the substring match alone, as before the index),
and the hint for a mistyped number. Prints milliseconds; asserts nothing about them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable

from sqlalchemy import insert

from hotline import search
from hotline.db import Database, scratch_postgres
from hotline.models import Request, RequestEvent
from hotline.numbers import make_request_number

WORDS = [
    "линия",
    "камера",
    "не",
    "читает",
    "коды",
    "сканер",
    "склад",
    "упаковка",
    "маркировка",
    "ошибка",
    "сервер",
    "отчёт",
    "этикетка",
    "принтер",
    "калибровка",
    "весы",
    "агрегация",
    "короб",
    "паллета",
    "смена",
    "оператор",
]
FORMS = ("", "и", "у", "ой", "ы", "ами")


def fill(db: Database, n: int) -> list[str]:
    rnd = random.Random(1)
    now = dt.datetime.now(dt.UTC)
    numbers = [make_request_number(1000 + i) for i in range(n)]
    with db.transaction() as conn:
        for start in range(0, n, 2000):
            chunk = range(start, min(start + 2000, n))
            conn.execute(
                insert(Request),
                [
                    {
                        "id": i + 1,
                        "number": numbers[i],
                        "kind": "incident",
                        "status": "new",
                        "channel": "email",
                        "subject": " ".join(rnd.choice(WORDS) + rnd.choice(FORMS) for _ in range(5)),
                        "description": " ".join(rnd.choice(WORDS) for _ in range(30)),
                        "created_at": now - dt.timedelta(minutes=n - i),
                        "updated_at": now,
                        "status_changed_at": now,
                    }
                    for i in chunk
                ],
            )
            conn.execute(
                insert(RequestEvent),
                [
                    {
                        "request_id": i + 1,
                        "at": now,
                        "actor": "email:a@plant.ru",
                        "action": "email_in",
                        "text": " ".join(rnd.choice(WORDS) + rnd.choice(FORMS) for _ in range(40)),
                    }
                    for i in chunk
                ],
            )
    return numbers


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), statistics.quantiles(times, n=20)[-1]


def run(label: str, db: Database, n: int, rounds: int) -> None:
    db.upgrade()
    numbers = fill(db, n)
    start = time.perf_counter()
    with db.transaction() as conn:
        search.rebuild_index(conn)
    print(f"{label}: indexed {n} requests in {time.perf_counter() - start:.1f} s")
    rnd = random.Random(2)
    substring_only = search.word_match

    def find(query: Callable[[], str], words: bool = True) -> Callable[[], object]:
        def go() -> object:
            search.word_match = substring_only if words else (lambda session, q: None)  # type: ignore[assignment]
            try:
                with db.session() as s:
                    return search.search_requests(s, search.RequestFilter(text=query()))
            finally:
                search.word_match = substring_only

        return go

    cases = {
        "one word, any form": find(lambda: rnd.choice(WORDS) + "ами"),
        "two words, any form": find(lambda: f"{rnd.choice(WORDS)}и {rnd.choice(WORDS)}"),
        "one word, substring match only": find(lambda: rnd.choice(WORDS), words=False),
        "mistyped number hint": lambda: _hint(db, numbers, rnd),
    }
    for name, fn in cases.items():
        fn()
        p50, p95 = timed(fn, rounds)
        print(f"{label}: {name:<34} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")


def _hint(db: Database, numbers: list[str], rnd: random.Random) -> object:
    number = rnd.choice(numbers)
    with db.session() as s:
        return search.suggest_numbers(s, number[:-1] + str((int(number[-1]) + 1) % 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("HOTLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.sqlite3")
        run("SQLite", db, args.requests, args.rounds)
        db.dispose()
    with scratch_postgres(args.postgres, "hotline_bench") as url:
        db = Database(url)
        run("PostgreSQL", db, args.requests, args.rounds)
        db.dispose()


if __name__ == "__main__":
    main()
