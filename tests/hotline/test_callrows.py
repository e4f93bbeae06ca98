"""The call-row contract: every CallRows implementation, on SQLite and PostgreSQL."""

import datetime as dt

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select

from hotline import callrows
from hotline.callrows import CallRowStore, CoreRows, SqliteRows
from hotline.db import Database
from hotline.models import Call, utcnow
from tests.conftest import _reset_postgres

IMPLEMENTATIONS = {"core": CoreRows, "sqlite": SqliteRows}  # by the name in the parameters


@pytest.fixture(
    params=[
        ("sqlite", "sqlite"),
        ("sqlite", "core"),
        pytest.param(("postgres", "core"), marks=pytest.mark.postgres),
    ],
    ids=["sqlite-fast-path", "sqlite-core", "postgres-core"],
)
def any_db(request, _sqlite_template, tmp_path):
    """A migrated database, with the name of the implementation to test on it."""
    database_name, request.node.implementation = request.param
    if database_name == "sqlite":
        yield request.getfixturevalue("db")
        return
    url = request.getfixturevalue("_postgres_database")
    _reset_postgres(url)
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def rows_in(request, any_db):
    """A function giving the rows of one implementation in a write transaction."""
    implementation = IMPLEMENTATIONS[request.node.implementation]
    store = CallRowStore(any_db.engine)

    def rows_in():
        class Transaction:
            def __enter__(self):
                self.cm = store.transaction()
                conn, _ = self.cm.__enter__()
                return implementation(conn)

            def __exit__(self, *exc):
                return self.cm.__exit__(*exc)

        return Transaction()

    return rows_in


def test_a_call_written_is_read_back_as_written(rows_in, any_db):
    started = dt.datetime(2026, 3, 2, 9, 15, 30, 123456, tzinfo=dt.UTC)
    values = callrows.new_call("twilio", "CA1", from_number="+79001112233", started_at=started)
    values["flow_state"] = {"step": "menu", "seq": 2, "typed": "Ш"}
    with rows_in() as rows:
        assert rows.find("twilio", "CA1") is None
        values["id"] = rows.insert_call(values)
    with rows_in() as rows:
        found = rows.find("twilio", "CA1")
    assert found == values
    assert found["started_at"] == started and found["started_at"].tzinfo is not None
    with any_db.session() as s:  # and the ORM reads what the rows wrote
        call = s.scalars(select(Call)).one()
        assert (call.id, call.from_number, call.flow_state) == (
            values["id"],
            "+79001112233",
            values["flow_state"],
        )
        assert call.started_at == started


def test_update_sets_only_the_columns_given(rows_in):
    with rows_in() as rows:
        id_ = rows.insert_call(callrows.new_call("asterisk", "1700.1", from_number="+79001112233"))
        ended = utcnow()
        rows.update_call(id_, {"outcome": "status_heard", "ended_at": ended, "flow_state": {"seq": 5}})
        rows.update_call(id_, {})  # nothing changed: nothing written
    with rows_in() as rows:
        found = rows.find("asterisk", "1700.1")
    assert found is not None
    assert (found["outcome"], found["ended_at"], found["flow_state"]) == ("status_heard", ended, {"seq": 5})
    assert found["from_number"] == "+79001112233" and found["hangup_cause"] is None


def test_events_keep_their_order_and_data(rows_in, any_db):
    with rows_in() as rows:
        id_ = rows.insert_call(callrows.new_call("twilio", "CA2"))
        at = utcnow()
        rows.insert_events(
            [
                {"call_id": id_, "at": at, "kind": "digits", "detail": "1", "data": {"digits": "1"}},
                {"call_id": id_, "at": at, "kind": "lookup", "detail": "10008", "data": {}},
                {"call_id": id_, "at": at, "kind": "said", "detail": "Заявка «1»", "data": {"ч": [1, None]}},
            ]
        )
        rows.insert_events([])
    with any_db.session() as s:
        call = s.scalars(select(Call)).one()
        assert [(e.kind, e.detail, e.data, e.at) for e in call.events] == [
            ("digits", "1", {"digits": "1"}, at),
            ("lookup", "10008", {}, at),
            ("said", "Заявка «1»", {"ч": [1, None]}, at),
        ]


@pytest.mark.parametrize("events", [0, 1, 3])
def test_a_step_moves_a_call_only_from_the_row_it_read(rows_in, any_db, events):
    """`move` writes a step run on a read row if the row is still that, else nothing."""
    with rows_in() as rows:
        values = callrows.new_call("twilio", "CA5", from_number="+79001112233")
        values["flow_state"] = {"step": "menu", "seq": 1, "typed": "Ш"}
        values["id"] = rows.insert_call(values)
    at = utcnow()
    logged = [
        {"call_id": values["id"], "at": at, "kind": "digits", "detail": str(i), "data": {"n": [i]}}
        for i in range(events)
    ]
    step = {"flow_state": {"step": "number", "seq": 2}, "answered_at": at}
    with rows_in() as rows:
        assert rows.move(values, step, logged)
    with rows_in() as rows:  # the same step again, on the row as it was: refused
        assert not rows.move(values, {"flow_state": {"step": "menu", "seq": 9}}, logged)
        moved = rows.find("twilio", "CA5")
    assert moved == {**values, **step}
    with rows_in() as rows:  # a step that changes nothing still checks the row
        assert rows.move(moved, {}, [])
        assert not rows.move(values, {}, [])
    with any_db.session() as s:
        call = s.scalars(select(Call)).one()
        assert [(e.kind, e.detail, e.data, e.at) for e in call.events] == [
            ("digits", str(i), {"n": [i]}, at) for i in range(events)
        ]


@pytest.mark.parametrize("events", [0, 2])
def test_a_new_call_is_made_once_with_its_events(rows_in, any_db, events):
    at = utcnow()
    values = callrows.new_call("twilio", "CA6", from_number="+79001112233")
    values["flow_state"] = {"step": "menu", "seq": 1}
    logged = [{"call_id": 0, "at": at, "kind": "said", "detail": str(i), "data": {}} for i in range(events)]
    with rows_in() as rows:
        id_ = rows.make(values, logged)
    assert id_ is not None
    with rows_in() as rows:  # the same call again (the same webhook in another worker): refused
        assert rows.make({**values, "flow_state": {"seq": 7}}, logged) is None
        assert rows.find("twilio", "CA6") == {**values, "id": id_}
    with any_db.session() as s:
        call = s.scalars(select(Call)).one()
        assert [(e.call_id, e.detail, e.at) for e in call.events] == [
            (id_, str(i), at) for i in range(events)
        ]


def test_start_call_makes_once_and_fills_gaps_only(rows_in):
    with rows_in() as rows:
        first = callrows.start_call(rows, "asterisk", "1700.2", to_number="+73435674530")
        again = callrows.start_call(
            rows,
            "asterisk",
            "1700.2",
            from_number="+79005550000",
            to_number="+70000000000",
            caller_name="Иван",
        )
    assert again["id"] == first["id"]
    assert (again["from_number"], again["to_number"], again["caller_name"]) == (
        "+79005550000",
        "+73435674530",  # a number known already is not replaced
        "Иван",
    )
    with rows_in() as rows:
        assert rows.find("asterisk", "1700.2") == again


def test_start_call_stores_what_the_backend_says_cleaned(rows_in):
    with rows_in() as rows:
        values = callrows.start_call(
            rows, "asterisk", "1700.3", from_number="8 (900) 555-00-00", caller_name=" Иван\nПетров\x00"
        )
    assert values["from_number"] == "+79005550000"
    assert values["caller_name"] == "Иван Петров"
    with rows_in() as rows:
        assert rows.find("asterisk", "1700.3") == values


def test_a_start_with_the_id_of_an_ended_call_makes_a_new_call(rows_in):
    with rows_in() as rows:
        old = callrows.start_call(rows, "twilio", "CA1", starts=True)
        rows.update_call(old["id"], {"ended_at": utcnow()})
    with rows_in() as rows:
        assert callrows.start_call(rows, "twilio", "CA1")["id"] == old["id"]  # a late report: the old call
        new = callrows.start_call(rows, "twilio", "CA1", starts=True)
    assert new["id"] != old["id"] and new["ended_at"] is None
    with rows_in() as rows:
        assert rows.find("twilio", "CA1") == new
        renamed = rows.find("twilio", f"CA1#{old['id']}")
    assert renamed is not None and renamed["id"] == old["id"]


def test_a_failed_transaction_writes_nothing(rows_in):
    with pytest.raises(RuntimeError), rows_in() as rows:
        rows.insert_call(callrows.new_call("twilio", "CA3"))
        raise RuntimeError("the step failed")
    with rows_in() as rows:
        assert rows.find("twilio", "CA3") is None


def test_a_duplicate_call_is_refused_as_core_would(rows_in):
    from sqlalchemy.exc import IntegrityError

    with rows_in() as rows:
        rows.insert_call(callrows.new_call("twilio", "CA4"))
    with pytest.raises(IntegrityError), rows_in() as rows:
        rows.insert_call(callrows.new_call("twilio", "CA4"))


def _database(request, database: str) -> Database:
    if database == "sqlite":
        return request.getfixturevalue("db")
    url = request.getfixturevalue("_postgres_database")
    _reset_postgres(url)
    db = Database(url)
    request.addfinalizer(db.dispose)
    return db


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_many_calls_are_found_in_one_read_as_one_by_one(request, database):
    """CoreRows.find_many (the call-log writer reads a batch's calls with it), on both databases."""
    db = _database(request, database)
    store = CallRowStore(db.engine)
    with store.transaction() as (conn, _):
        rows = CoreRows(conn)
        for sid in ("CA1", "CA2"):
            rows.insert_call(callrows.new_call("twilio", sid, from_number="+79001112233"))
        rows.insert_call(callrows.new_call("asterisk", "CA3"))
    with store.transaction() as (conn, _):
        rows = CoreRows(conn)
        many = rows.find_many("twilio", ["CA1", "CA2", "CA3", "CA4"])
        assert many == {sid: rows.find("twilio", sid) for sid in ("CA1", "CA2", "CA3", "CA4")}
    assert many["CA1"] is not None and many["CA3"] is None and many["CA4"] is None


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_batch_writes_what_its_calls_wrote_one_by_one(request, database):
    """BatchRows (the call-log writers' batches): the same rows and events as CoreRows
    call by call; on PostgreSQL in a few statements however many calls (a round trip
    each was the writer's time under load)."""
    db = _database(request, database)
    store = CallRowStore(db.engine)
    with store.transaction() as (conn, _):
        rows = CoreRows(conn)
        rows.insert_call(callrows.new_call("twilio", "OLD"))
        ended = callrows.start_call(rows, "twilio", "ENDED")
        rows.update_call(ended["id"], {"ended_at": utcnow()})
    sids = [f"CA{n}" for n in range(20)] + ["OLD", "ENDED"]
    statements: list[str] = []
    sqlalchemy_event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    at = utcnow()
    with store.transaction() as (conn, _):
        rows = callrows.BatchRows(CoreRows(conn), "twilio", sids)
        for n, sid in enumerate(sids):
            values = callrows.start_call(rows, "twilio", sid, from_number="+79001112233", starts=True)
            rows.update_call(values["id"], {"flow_state": {"seq": n, "typed": "Ш"}, "outcome": "menu"})
            event = {"call_id": values["id"], "at": at, "kind": "step", "detail": sid, "data": {}}
            rows.insert_events([event])
        again = callrows.start_call(rows, "twilio", "CA3")  # twice in one batch: found as written
        assert again["flow_state"] == {"seq": 3, "typed": "Ш"}
        rows.write()
    if database == "postgres":
        assert len(statements) <= 8  # read, ids, the changed, the made, events; CA3 again: 2 more
    with db.session() as s:
        calls = {c.backend_call_id: c for c in s.scalars(select(Call).order_by(Call.id))}
        assert list(calls)[:2] == ["OLD", "ENDED#2"]  # the ended call renamed, a new one made
        assert [calls[sid].flow_state["seq"] for sid in sids] == list(range(22))
        assert all(calls[sid].outcome == "menu" and calls[sid].started_at for sid in sids)
        assert calls["CA0"].from_number == "+79001112233" and calls["OLD"].from_number == "+79001112233"
        assert sorted(e.detail for c in calls.values() for e in c.events) == sorted(sids)
        ids = [calls[sid].id for sid in sids[:20]]
        assert ids == sorted(ids)  # made in the order they came
