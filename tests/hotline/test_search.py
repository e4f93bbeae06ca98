"""Search and pages of the call log and requests, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from hotline import calllog, registry
from hotline.models import Request
from hotline.search import (
    CallFilter,
    RequestFilter,
    glob_pattern,
    phone_digits,
    regex_pattern,
    search_calls,
    search_requests,
)


def test_patterns():
    assert glob_pattern("Ёж 1*") == "*[ЕеЁё][Жж] 1[*]*"
    assert glob_pattern("a]") == "*[Aa][]]*"
    assert regex_pattern("ёж.+") == "[ЕеЁё][Жж]\\.\\+"
    assert phone_digits("8 (900) 123-45-67") == "79001234567"
    assert phone_digits("+7 900 1234567") == "79001234567"
    assert phone_digits("CA0010") == ""


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("камера", True),
        ("КАМЕРА", True),
        ("кАмЕрА", True),
        ("ёлка", True),
        ("ЕЛКА", True),
        ("сканер", False),
        ("Линия_3", False),  # LIKE wildcards are plain characters here
        ("%", False),
        ("[к]", False),
        ("(", False),
        ("плохо читает", True),
    ],
)
def test_cyrillic_search_ignores_case_on_both_databases(any_db, query, found):
    with any_db.session() as s:
        registry.open_request(
            s,
            kind="incident",
            channel="email",
            actor="cli",
            subject="Камера на линии 3",
            description="Ёлка у входа; камера плохо читает коды",
        )
        rows, _ = search_requests(s, RequestFilter(text=query))
        assert bool(rows) is found


def test_call_pages_walk_the_whole_log_both_ways(any_db):
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with any_db.session() as s:
        for i in range(25):
            # Pairs of calls at the same second: the id breaks the tie.
            calllog.start_call(
                s, backend="twilio", backend_call_id=f"CA{i}", started_at=start + dt.timedelta(seconds=i // 2)
            )
    with any_db.session() as s:
        seen: list[int] = []
        page = search_calls(s, CallFilter(), limit=10)
        pages = [page]
        while page.next_cursor:
            page = search_calls(s, CallFilter(), before=page.next_cursor, limit=10)
            pages.append(page)
        seen = [c.id for p in pages for c in p.items]
        assert seen == list(range(25, 0, -1))
        back = search_calls(s, CallFilter(), after=pages[-1].prev_cursor, limit=10)
        assert [c.id for c in back.items] == [c.id for c in pages[-2].items]
        assert pages[0].prev_cursor is None


def test_request_search_by_number_and_phone(any_db):
    with any_db.session() as s:
        a = registry.open_request(s, kind="incident", channel="phone", actor="cli", phone="+79001234567")
        b = registry.open_request(s, kind="problem", channel="web", actor="cli", subject="другое")
        by_number, _ = search_requests(s, RequestFilter(text=b.number))
        by_phone, _ = search_requests(s, RequestFilter(text="8-900-123-45-67"))
        assert [r.id for r in by_number] == [b.id]
        assert [r.id for r in by_phone] == [a.id]
        assert s.query(Request).count() == 2
