"""`hotline db copy`: the embedded SQLite database moved into PostgreSQL, numbers kept."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from hotline import calllog, dbcopy, registry, search, storage, users
from hotline.db import Database, scratch_postgres
from hotline.dbcopy import CopyFailed, copy_database
from hotline.errors import UserError
from hotline.models import Base, Counter, Request, Transcript
from hotline.numbers import is_valid
from tests.conftest import PG_URL, _reset_postgres, missing_service

pytestmark = pytest.mark.postgres

PASSWORD = "три несвязанных слова у конвейера"
HOTLINE = [sys.executable, "-c", "from hotline.cli import main; main()"]


@pytest.fixture
def target_url(_postgres_database: str) -> str:
    """The test PostgreSQL database, migrated and emptied as a fresh `db upgrade` leaves it."""
    _reset_postgres(_postgres_database)
    return _postgres_database


def fill(db: Database, data_dir: Path) -> list[str]:
    """A source with what a working hotline holds; the request numbers issued."""
    with db.session() as s:
        engineer = users.create_user(s, "ivanov", password=PASSWORD, name="Иван Иванов")
        users.start_session(s, engineer)
        opened = [
            registry.open_request(
                s,
                kind=kind,
                channel="phone",
                actor="ivr",
                subject=f"Линия {i} не читает коды",
                description="Сканер на конвейере перестал распознавать QR-коды",
                phone="+79001234567",
            )
            for i, kind in enumerate(["incident", "problem", "service_request", "incident", "incident"])
        ]
        voicemail, letter = opened[0], opened[1]
        registry.change_status(s, voicemail, "in_progress", actor="engineer:ivanov", note="взял")
        registry.assign(s, voicemail, engineer, actor="engineer:ivanov")
        registry.ask_clarification(s, voicemail, actor="engineer:ivanov", question="Какая линия?")
        registry.add_note(s, letter, actor="engineer:ivanov", text="После калибровки весов коды не читаются")
        registry.change_status(s, opened[2], "in_progress", actor="engineer:ivanov")
        registry.change_status(s, opened[2], "processed", actor="engineer:ivanov", note="готово")
        call = calllog.start_call(
            s,
            backend="twilio",
            backend_call_id="CA0001",
            from_number="+79001234567",
            to_number="+73435674530",
        )
        calllog.log_event(s, call, "menu", "2", digits="2")
        calllog.log_event(s, call, "recording", "voicemail", seconds=12.5)
        call.request_id = voicemail.id
        calllog.end_call(s, call, backend_status="completed", outcome="request_created")
        recording = storage.store_attachment(
            s,
            data_dir,
            source=b"RIFF0000WAVE",
            filename="voicemail.wav",
            content_type="audio/wav",
            origin="phone",
            request_id=voicemail.id,
            call_id=call.id,
            external_id="twilio:RE0001",
        )
        s.add(
            Transcript(
                attachment=recording,
                text="сломался сканер на третьей линии",
                normalized_text="сломался сканер на 3 линии",
                words=[{"word": "сломался", "start": 0.2, "end": 0.8, "conf": 0.93}],
                mean_confidence=0.93,
                model="vosk-model-small-ru",
            )
        )
        storage.store_attachment(
            s, data_dir, source=b"line 3: timeout", filename="scanner.log", content_type="text/plain",
            origin="web", request_id=letter.id,
        )  # fmt: skip
        return [r.number for r in opened]


def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the models, in primary-key order."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: [
                    tuple(row) for row in conn.execute(select(table).order_by(*table.primary_key.columns))
                ]
                for table in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def body(number: str) -> int:
    return int(number[:-1])


def found_by_words(session: Session, query: str) -> list[str]:
    """Numbers of the requests the word index finds (no substring scan to fall back on)."""
    return list(session.scalars(select(Request.number).where(search.word_match(session, query))))


def test_every_row_is_copied_and_numbers_and_ids_continue(db, tmp_path, target_url):
    numbers = fill(db, tmp_path / "data")
    before = contents(db.url)

    report = copy_database(db.url, target_url, batch=2)  # several batches per table

    assert contents(target_url) == before
    assert report.rows == {name: len(rows) for name, rows in before.items()}
    assert report.rows["requests"] == 5 and report.rows["call_events"] == 2
    assert report.rows["transcripts"] == report.rows["users"] == report.rows["user_sessions"] == 1
    assert report.rows["attachments"] == 2 and report.rows["request_events"] > 5
    target = Database(target_url)
    try:
        with target.session() as s:
            new = registry.open_request(
                s, kind="incident", channel="web", actor="cli", subject="после переноса"
            )
            user = users.create_user(s, "petrov", password=PASSWORD)  # a fresh id from each sequence
            call = calllog.start_call(s, backend="asterisk", backend_call_id="1700000000.1")
            calllog.log_event(s, call, "menu", "1")
            storage.store_attachment(
                s, tmp_path / "data", source=b"x", filename="a.txt", content_type="text/plain", origin="web",
                request_id=new.id, call_id=call.id,
            )  # fmt: skip
            assert user.id > 1 and new.id > 5
        assert is_valid(new.number) and new.number == report.next_number
        assert body(new.number) == max(map(body, numbers)) + 1
        with target.session() as s:  # the copied history is in the target's word index
            assert found_by_words(s, "калибровка") == [numbers[1]]
    finally:
        target.dispose()


def test_numbers_continue_after_the_highest_issued_even_if_the_counter_lags(db, tmp_path, target_url):
    numbers = fill(db, tmp_path / "data")
    with db.session() as s:  # e.g. a database put together from a backup by hand
        s.execute(update(Counter).where(Counter.name == "request").values(value=1000))

    report = copy_database(db.url, target_url)

    assert is_valid(report.next_number) and body(report.next_number) == max(map(body, numbers)) + 1
    target = Database(target_url)
    try:
        with target.session() as s:
            assert (
                registry.open_request(s, kind="problem", channel="web", actor="cli").number
                == report.next_number
            )
    finally:
        target.dispose()


def test_a_target_that_holds_data_is_refused_and_left_unchanged(db, tmp_path, target_url):
    fill(db, tmp_path / "data")
    target = Database(target_url)
    try:
        with target.session() as s:
            registry.open_request(s, kind="incident", channel="web", actor="cli", subject="уже здесь")
    finally:
        target.dispose()
    before = contents(target_url)

    with pytest.raises(UserError, match=r"already holds data \(table requests\)"):
        copy_database(db.url, target_url)

    assert contents(target_url) == before


def test_a_target_that_issued_numbers_is_refused(db, tmp_path, target_url):
    fill(db, tmp_path / "data")
    engine = create_engine(target_url)
    with engine.begin() as conn:  # every request deleted, but their numbers were given out
        conn.execute(update(Counter).where(Counter.name == "request").values(value=1200))
    engine.dispose()

    with pytest.raises(UserError, match="already issued request numbers"):
        copy_database(db.url, target_url)


def test_a_failure_mid_copy_leaves_the_target_empty(db, tmp_path, target_url):
    fill(db, tmp_path / "data")
    # SQLite keeps a text longer than its column; PostgreSQL refuses it. The table comes
    # late in the order, after requests, users and calls were written.
    path = make_url(db.url).database
    with sqlite3.connect(str(path)) as raw:
        raw.execute("UPDATE call_events SET kind = ? WHERE id = 2", ("x" * 60,))
    raw.close()
    empty = contents(target_url)

    with pytest.raises(CopyFailed, match=r"in table call_events \(row 2\): .*the target holds no data"):
        copy_database(db.url, target_url, batch=1)

    assert contents(target_url) == empty
    assert empty["counters"] == [("request", 999)]
    assert all(not rows for name, rows in empty.items() if name != "counters")
    with sqlite3.connect(str(path)) as raw:  # once the row is put right, the same target takes the copy
        raw.execute("UPDATE call_events SET kind = 'recording' WHERE id = 2")
    raw.close()
    assert copy_database(db.url, target_url).rows["call_events"] == 2


def test_a_missing_or_outdated_source_is_refused(db, tmp_path, target_url):
    with pytest.raises(UserError, match="no database to copy from"):
        copy_database(f"sqlite:///{tmp_path / 'nothing.sqlite3'}", target_url)
    with db.transaction() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))
    with pytest.raises(UserError, match="run `hotline db upgrade` on it first"):
        copy_database(db.url, target_url)
    with pytest.raises(UserError, match="the same database"):
        copy_database(target_url, target_url)


def test_postgres_back_to_sqlite(db, tmp_path, target_url):
    numbers = fill(db, tmp_path / "data")
    copy_database(db.url, target_url)
    back = f"sqlite:///{tmp_path / 'back' / 'hotline.sqlite3'}"

    report = copy_database(target_url.replace("+psycopg", ""), back)

    assert contents(back) == contents(db.url)
    assert body(report.next_number) == max(map(body, numbers)) + 1
    database = Database(back)
    try:
        with database.session() as s:  # SQLite's word index (outside the models) is built too
            assert found_by_words(s, "калибровка") == [numbers[1]]
            assert s.scalar(select(func.count()).select_from(Request)) == 5
    finally:
        database.dispose()


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    """A PostgreSQL database just created, never migrated (what an operator starts from)."""
    if not PG_URL:
        missing_service("HOTLINE_TEST_POSTGRES_URL is not set")
    with scratch_postgres(PG_URL, "hotline_test_copy") as url:
        yield url


@pytest.mark.parametrize("source_backend", ["sqlite", "postgres"])
def test_a_source_in_use_is_copied_as_one_snapshot(
    db, tmp_path, target_url, monkeypatch, request, source_backend
):
    fill(db, tmp_path / "data")
    source, target = db.url, target_url
    if source_backend == "postgres":
        copy_database(db.url, target_url)
        source, target = target_url, request.getfixturevalue("fresh_postgres")
    before = contents(source)
    service = Database(source)
    copy_table = dbcopy._copy_table

    def copy_while_the_service_writes(reader, writer, table, batch):
        copied = copy_table(reader, writer, table, batch)
        if table.name == "requests":  # a call leaves a request between two tables
            with service.session() as s:
                registry.open_request(s, kind="incident", channel="phone", actor="ivr", subject="во время")
        return copied

    monkeypatch.setattr(dbcopy, "_copy_table", copy_while_the_service_writes)
    try:
        report = copy_database(source, target)
    finally:
        service.dispose()

    assert contents(target) == before  # as the source was when the copy began
    assert report.rows["requests"] == 5 and len(contents(source)["requests"]) == 6


def test_the_operator_moves_to_postgres_from_the_command_line(tmp_path, fresh_postgres):
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
        full = {**clean, "HOTLINE_DATA_DIR": str(tmp_path / "data"), **env}
        return subprocess.run(HOTLINE + list(args), capture_output=True, text=True, env=full, timeout=120)

    opened = [run("request", "open", "--kind", "incident", "--text", f"Линия {i}") for i in range(3)]
    assert [p.stdout.strip() for p in opened] == ["10008", "10019", "10024"]
    as_operator_types_it = fresh_postgres.replace("postgresql+psycopg://", "postgresql://")

    copied = run("db", "copy", "--to", as_operator_types_it)

    assert copied.returncode == 0, copied.stderr
    assert "next request number: 10035" in copied.stdout and "counts match" in copied.stdout
    assert any(line.split() == ["requests", "3"] for line in copied.stdout.splitlines())
    on_postgres = {"HOTLINE_DATABASE_URL": as_operator_types_it}
    assert run("request", "open", "--kind", "problem", "--text", "x", **on_postgres).stdout.strip() == "10035"
    assert "Линия 1" in run("request", "show", "10019", **on_postgres).stdout

    again = run("db", "copy", "--to", as_operator_types_it)
    assert again.returncode == 1
    assert again.stderr.startswith("error: the target database already holds data")
    assert len(again.stderr.splitlines()) == 1 and "postgres@" in again.stderr


def test_postgres_to_postgres_ids_continue_after_the_source_sequence(db, tmp_path, target_url, request):
    from hotline.models import RequestEvent

    fill(db, tmp_path / "data")
    copy_database(db.url, target_url)  # the source of this test: PostgreSQL, 5 requests
    source = Database(target_url)
    try:
        with source.session() as s:  # two requests opened last, then deleted: their ids were given out
            gone = [
                registry.open_request(s, kind="incident", channel="web", actor="cli", subject=f"удалю {i}")
                for i in range(2)
            ]
            s.flush()
            gone_ids = [r.id for r in gone]
        with source.session() as s:
            s.execute(RequestEvent.__table__.delete().where(RequestEvent.request_id.in_(gone_ids)))
            s.execute(Request.__table__.delete().where(Request.id.in_(gone_ids)))
            assert s.scalar(select(func.max(Request.id))) < min(gone_ids)
    finally:
        source.dispose()
    target_of_pg = request.getfixturevalue("fresh_postgres")

    copy_database(target_url, target_of_pg)

    target = Database(target_of_pg)
    try:
        with target.session() as s:
            new = registry.open_request(
                s, kind="incident", channel="web", actor="cli", subject="после переноса"
            )
            s.flush()
            assert new.id == max(gone_ids) + 1  # not an id an old /requests/<id> link names
            user = users.create_user(s, "petrov", password=PASSWORD)
            assert user.id == 2  # a sequence the source did not run ahead: after the highest id
    finally:
        target.dispose()


def test_a_postgres_url_without_a_password_leaves_it_to_libpq():
    # No password in the URL: psycopg is given none, so libpq reads PGPASSWORD or ~/.pgpass.
    engine = create_engine(dbcopy._normal_url("postgresql://hotline@db-host:5432/hotline"))
    try:
        _, params = engine.dialect.create_connect_args(engine.url)
        assert "password" not in params and params["user"] == "hotline"
    finally:
        engine.dispose()
