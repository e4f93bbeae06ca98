"""p95 response times of the dashboard on a large PostgreSQL database.

    .venv/bin/python benchmarks/dashboard.py [--calls 100000] [--requests 20000] [--rounds 100]
        [--postgres URL]

Creates a fresh database on the server (dropped at the end), fills it with COPY
(calls with their events, requests with history, recordings with transcripts), logs
in through the Flask test client and times the call-log page, filtered searches and
request pages as an engineer sees them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import statistics
import tempfile
import time

import psycopg
from sqlalchemy.engine import make_url

from hotline import search, users
from hotline.db import Database, scratch_postgres
from hotline.numbers import make_request_number
from hotline.settings import load_settings
from web import create_app

OUTCOMES = ["status_heard", "request_created", "info_added", "transferred", "abandoned", "no_input", None]
KINDS = ["incident", "problem", "service_request"]
STATUSES = ["new", "in_progress", "awaiting_info", "processed"]
CHANNELS = ["phone", "email", "web"]
WORDS = [
    *("линия", "камера", "не", "читает", "коды", "сканер", "склад"),
    *("упаковка", "маркировка", "ошибка", "сервер", "отчёт", "этикетка", "принтер"),
]
PASSWORD = "benchmark-password"


def fill(url: str, n_calls: int, n_requests: int, seed: int = 1) -> list[str]:
    """Bulk-load the database; returns the request numbers."""
    rnd = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    phones = [f"+79{rnd.randrange(10**9):09d}" for _ in range(5000)]
    numbers = [make_request_number(1000 + i) for i in range(n_requests)]
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY requests (id, number, kind, kind_confirmed, status, channel, contact_phone,"
            " contact_email, subject, description, created_at, updated_at, status_changed_at,"
            " first_response_at, archived_at)"
            " FROM STDIN"
        ) as copy:
            for i, number in enumerate(numbers, 1):
                created = now - dt.timedelta(minutes=30 * (n_requests - i) + rnd.randrange(30))
                status = rnd.choice(STATUSES)
                words = " ".join(rnd.choices(WORDS, k=12))
                responded = None if status == "new" else created + dt.timedelta(minutes=rnd.randrange(5, 600))
                copy.write_row(
                    (
                        i,
                        number,
                        rnd.choice(KINDS),
                        status != "new",
                        status,
                        rnd.choice(CHANNELS),
                        rnd.choice(phones),
                        None,
                        words[:60].capitalize(),
                        words,
                        created,
                        created,
                        created,
                        responded,
                        created if status == "processed" else None,
                    )
                )
        with cur.copy(
            "COPY request_events (request_id, at, actor, action, text, to_status) FROM STDIN"
        ) as copy:
            for i in range(1, n_requests + 1):
                for k in range(5):
                    copy.write_row(
                        (
                            i,
                            now - dt.timedelta(days=1, minutes=-k),
                            "engineer:bench",
                            "note",
                            f"заметка {k}",
                            None,
                        )
                    )
        with cur.copy(
            "COPY attachments (id, request_id, path, filename, content_type, size, sha256, source,"
            " created_at, duration_seconds, transcription_state, transcription_attempts) FROM STDIN"
        ) as copy:
            for i in range(1, n_requests + 1):
                copy.write_row(
                    (
                        i,
                        i,
                        f"recordings/x/{i}.wav",
                        f"{i}.wav",
                        "audio/wav",
                        64000,
                        "0" * 64,
                        "phone",
                        now,
                        8.0,
                        "done",
                        1,
                    )
                )
        with cur.copy(
            "COPY transcripts (attachment_id, text, normalized_text, words, model, created_at) FROM STDIN"
        ) as copy:
            for i in range(1, n_requests + 1):
                ws = rnd.choices(WORDS, k=20)
                timed = [
                    {"word": w, "start": k * 0.4, "end": k * 0.4 + 0.3, "conf": rnd.random()}
                    for k, w in enumerate(ws)
                ]
                copy.write_row(
                    (i, " ".join(ws), " ".join(ws), json.dumps(timed, ensure_ascii=False), "bench", now)
                )
        with cur.copy(
            "COPY calls (id, backend, backend_call_id, from_number, to_number, started_at, ended_at,"
            " duration_seconds, outcome, request_id, flow_state) FROM STDIN"
        ) as copy:
            for i in range(1, n_calls + 1):
                started = now - dt.timedelta(
                    seconds=int(365 * 86400 * (n_calls - i) / n_calls) + rnd.randrange(60)
                )
                length = rnd.randrange(5, 400)
                copy.write_row(
                    (
                        i,
                        rnd.choice(["twilio", "asterisk"]),
                        f"C{i}",
                        rnd.choice(phones),
                        "+73435674530",
                        started,
                        started + dt.timedelta(seconds=length),
                        length,
                        rnd.choice(OUTCOMES),
                        rnd.randrange(1, n_requests + 1) if rnd.random() < 0.2 else None,
                        "{}",
                    )
                )
        with cur.copy("COPY call_events (call_id, at, kind, detail, data) FROM STDIN") as copy:
            for i in range(1, n_calls + 1):
                for k, kind in enumerate(("start", "menu", "digits", "prompt", "hangup")):
                    copy.write_row(
                        (
                            i,
                            now - dt.timedelta(seconds=n_calls - i - k),
                            kind,
                            "",
                            json.dumps({"digits": "1"}),
                        )
                    )
        for table in ("requests", "attachments", "calls"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        cur.execute("UPDATE counters SET value = %s WHERE name = 'request'", (1000 + n_requests,))
        cur.execute("ANALYZE")
    return numbers


def mistyped(number: str) -> str:
    """The number with its check digit off by one: the search then suggests the right one."""
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def timed(client, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, (url, response.status_code)
    return elapsed * 1000


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("HOTLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()
    with scratch_postgres(args.postgres, "hotline_bench") as url:
        db = Database(url)
        db.upgrade()
        start = time.perf_counter()
        numbers = fill(url, args.calls, args.requests)
        print(
            f"filled {args.calls} calls (5 events each) and {args.requests} requests"
            f" in {time.perf_counter() - start:.1f} s"
        )
        start = time.perf_counter()
        with db.transaction() as conn:  # COPY went around the ORM: index the rows as migration 0004 does
            indexed = search.rebuild_index(conn)
        print(f"indexed {indexed} requests for word-form search in {time.perf_counter() - start:.1f} s")
        with db.session() as s:
            users.create_user(s, "bench", password=PASSWORD, role="engineer")
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(
                {"HOTLINE_DATA_DIR": tmp, "HOTLINE_DATABASE_URL": url, "HOTLINE_SECRET_KEY": "bench"}
            )
            client = create_app(settings=settings, db=db).test_client()
            token = re.search(
                r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)
            )
            assert token
            login = client.post(
                "/login", data={"login": "bench", "password": PASSWORD, "csrf_token": token.group(1)}
            )
            assert login.status_code == 302
            rnd = random.Random(2)
            cases = {
                "call log, first page": lambda: "/calls",
                "call log, a page deep in history": lambda: (
                    f"/calls?before={rnd.randrange(1000, args.calls)}"
                ),
                "calls filtered (outcome+backend+dates)": lambda: (
                    "/calls?outcome=abandoned&backend=twilio&from=2020-01-01&to=2100-01-01"
                ),
                "calls by caller number": lambda: f"/calls?number=79{rnd.randrange(100):02d}",
                "requests search (Cyrillic text)": lambda: (
                    f"/requests?q={rnd.choice(WORDS).upper()}&kind=incident"
                ),
                "requests search (phone)": lambda: f"/requests?q=8 9{rnd.randrange(100):02d}",
                "requests search (mistyped number)": lambda: f"/requests?q=№{rnd.choice(numbers)[:-1]}0",
                "CSV export of a filtered request list": lambda: (
                    "/export/requests.csv?kind=incident&status=new"
                ),
                "request page": lambda: f"/requests/{rnd.choice(numbers)}",
                "requests by status, then age": lambda: "/requests?sort=status",
                "requests by last activity": lambda: "/requests?sort=activity",
                "voicemail review queue": lambda: "/review",
                "live poll of a request list": lambda: "/live?scope=requests",
                "live poll of a request page": lambda: f"/live?scope=request&number={rnd.choice(numbers)}",
            }
            print(
                f"{'page':<42} {'p50 ms':>8} {'p95 ms':>8}   ({args.rounds} requests each, after 5 warm-up)"
            )
            worst = 0.0
            for label, make in cases.items():
                for _ in range(5):
                    timed(client, make())
                times = [timed(client, make()) for _ in range(args.rounds)]
                worst = max(worst, p95(times))
                print(f"{label:<42} {statistics.median(times):8.1f} {p95(times):8.1f}")
            print(f"worst p95: {worst:.1f} ms (target < 150 ms)")
        db.dispose()


if __name__ == "__main__":
    main()
