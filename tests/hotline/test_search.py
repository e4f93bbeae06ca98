"""Search and pages of the call log and requests, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from hotline import calllog, registry, storage
from hotline.models import Request, Transcript
from hotline.numbers import is_valid
from hotline.search import (
    CallFilter,
    RequestFilter,
    glob_pattern,
    near_numbers,
    regex_pattern,
    search_calls,
    search_requests,
    suggest_numbers,
)
from hotline.transcription.transcripts import correct_transcript


def test_patterns():
    assert glob_pattern("Ёж 1*") == "*[ЕеЁё][Жж] 1[*]*"
    assert glob_pattern("a]") == "*[Aa][]]*"
    assert regex_pattern("ёж.+") == "[ЕеЁё][Жж]\\.\\+"


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("камера", True),
        ("КАМЕРА", True),
        ("кАмЕрА", True),
        ("ёлка", True),
        ("ЕЛКА", True),
        ("сканер", False),
        ("Лини_ 4", False),  # LIKE wildcards are plain characters here
        ("Линия_3", True),  # words: «линия» and «3», in any form
        ("%", False),
        ("[к]", False),
        ("(", False),
        ("плохо читает", True),
        ("амер", True),  # a piece inside a word: the substring scan, when words find nothing
        ("ЛКА У ВХ", True),
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


# --- word forms, numbers as typed, the index kept in step ---


def _find(s, query: str) -> list[str]:
    rows, _ = search_requests(s, RequestFilter(text=query))
    return sorted(r.number for r in rows)


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("калибровка", True),  # the text says «калибровки»
        ("КАЛИБРОВКОЙ", True),
        ("калибровку весов", True),
        ("калибровка сканера", False),  # every word must be there
        ("весы", True),
        ("калиб", True),  # the beginning of a word
        ("поверка", False),
    ],
)
def test_russian_word_forms_are_found_on_both_databases(any_db, query, found):
    with any_db.session() as s:
        req = registry.open_request(
            s, kind="service_request", channel="email", actor="cli", subject="Нужна помощь"
        )
        registry.add_note(s, req, actor="engineer:ivanov", text="После калибровки весов коды не читаются")
    with any_db.session() as s:
        assert bool(_find(s, query)) is found


def test_transcripts_and_letters_are_searched_and_kept_in_step(any_db, tmp_path):
    with any_db.session() as s:
        req = registry.open_request(s, kind="incident", channel="phone", actor="cli", subject="Голосовое")
        att = storage.store_attachment(
            s,
            tmp_path,
            source=b"RIFF",
            filename="voicemail.wav",
            content_type="audio/wav",
            origin="phone",
            request_id=req.id,
        )
        transcript = Transcript(attachment=att, text="сломался принтер этикеток", normalized_text="")
        s.add(transcript)
        letter = registry.open_request(s, kind="problem", channel="email", actor="cli", subject="Письмо")
        registry.record(
            s, letter, actor="email:a@plant.ru", action="email_in", text="Сканеры на линиях не видят коды"
        )
    with any_db.session() as s:
        assert _find(s, "принтеры") == [req.number]
        assert _find(s, "сканер линии") == [letter.number]
        transcript = s.get(Transcript, transcript.id)
        correct_transcript(s, transcript, "сломался маркиратор этикеток", login="ivanov")
    with any_db.session() as s:
        assert _find(s, "маркиратора") == [req.number]
        # The words heard at first stay findable: the recogniser's mistakes are what people remember.
        assert _find(s, "принтер") == [req.number]


def test_numbers_as_people_type_them(any_db):
    with any_db.session() as s:
        req = registry.open_request(s, kind="incident", channel="web", actor="cli", subject="Линия 4")
        other = registry.open_request(s, kind="incident", channel="web", actor="cli", subject="Линия 5")
        for typed in [req.number, f"№{req.number}", f"№ {req.number}", f"#{req.number}", f" {req.number} "]:
            assert _find(s, typed) == [req.number], typed
        calls, _ = search_requests(s, RequestFilter(text=f"№{other.number}"))
        assert [r.number for r in calls] == [other.number]


def test_a_mistyped_number_suggests_the_request_meant(any_db):
    with any_db.session() as s:
        reqs = [registry.open_request(s, kind="incident", channel="web", actor="cli") for _ in range(40)]
        numbers = {r.number for r in reqs}
        meant = reqs[35].number
        # One digit wrong, and two neighbours swapped: the slips the check digit catches.
        wrong_digit = meant[:2] + str((int(meant[2]) + 1) % 10) + meant[3:]
        swapped = meant[:3] + meant[4] + meant[3] + meant[5:] if meant[3] != meant[4] else wrong_digit
        for typed in [wrong_digit, f"№{swapped}"]:
            assert not is_valid(typed.lstrip("№"))
            assert _find(s, typed) == []
            suggested = suggest_numbers(s, typed)
            assert meant in suggested, (typed, suggested)
            assert set(suggested) <= numbers
        assert suggest_numbers(s, meant) == []  # a valid number needs no hint
        assert suggest_numbers(s, "калибровка") == []


def test_near_numbers_are_valid_and_one_slip_away():
    near = near_numbers("10036")
    assert "10035" in near and all(is_valid(n) for n in near)
    assert all(sum(a != b for a, b in zip(n, "10036", strict=True)) <= 2 for n in near)


def test_call_log_finds_a_request_number_typed_with_its_sign(any_db):
    with any_db.session() as s:
        req = registry.open_request(s, kind="incident", channel="phone", actor="cli")
        call = calllog.start_call(s, backend="twilio", backend_call_id="CA-num")
        call.request = req
        calllog.start_call(s, backend="twilio", backend_call_id="CA-other")
    with any_db.session() as s:
        page = search_calls(s, CallFilter(text=f"№ {req.number}"))
        assert [c.backend_call_id for c in page.items] == ["CA-num"]


def test_a_file_moved_to_another_request_takes_its_words_along(any_db, tmp_path):
    with any_db.session() as s:
        first = registry.open_request(s, kind="incident", channel="phone", actor="cli", subject="Первая")
        second = registry.open_request(s, kind="incident", channel="phone", actor="cli", subject="Вторая")
        att = storage.store_attachment(
            s,
            tmp_path,
            source=b"RIFF",
            filename="m.wav",
            content_type="audio/wav",
            origin="phone",
            request_id=first.id,
        )
        s.add(Transcript(attachment=att, text="остановился конвейер", normalized_text=""))
    with any_db.session() as s:
        assert _find(s, "конвейера") == [first.number]
        s.get(type(att), att.id).request_id = second.id
    with any_db.session() as s:
        assert _find(s, "конвейера") == [second.number]
