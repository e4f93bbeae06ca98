"""The dashboard's "Не принято" page and its boundary: huge ids are 404, never 500 (issue 12)."""

from __future__ import annotations

import pytest

from hotline import deadletters
from hotline.models import RecordingFetch
from web.boundary import int_arg


@pytest.fixture
def db(any_db):
    return any_db


def test_dead_letters_and_lost_recordings_are_listed(engineer, db, settings):
    raw = b"Subject: broken\r\n\r\nbody"
    for _ in range(deadletters.MAX_TRIES):
        deadletters.record_failure(db, settings.data_dir, "email", raw, "ivan@plant.example: Линия 3", "boom")
    with db.session() as s:
        s.add(
            RecordingFetch(
                backend="twilio",
                backend_call_id="CA" + "1" * 32,
                recording_ref="twilio:RE" + "2" * 32,
                url="https://api.twilio.com/x",
                state="failed",
                attempts=8,
                last_error="Twilio ответил 404",
            )
        )
    page = engineer.get("/intake").get_data(as_text=True)
    assert "ivan@plant.example: Линия 3" in page and "оставлено инженеру" in page
    assert "RE" + "2" * 32 in page and "Twilio ответил 404" in page and "не получена" in page


def test_the_page_needs_a_login(app):
    assert app.test_client().get("/intake").status_code in (302, 401)


@pytest.mark.parametrize("ident", ["2147483648", "99999999999999999999999999", "9" * 400])
def test_huge_ids_in_urls_are_not_found(engineer, ident):
    assert engineer.get(f"/calls/{ident}").status_code == 404


def test_int_arg_is_range_checked():
    assert int_arg({"page": "3"}, "page", low=1) == 3
    assert int_arg({"page": "0"}, "page", low=1) is None
    assert int_arg({"page": "9" * 30}, "page") is None
    assert int_arg({"page": "-1"}, "page") is None
    assert int_arg({"page": "١٢"}, "page") is None


@pytest.mark.parametrize("query", ["page=99999999999999999999", "page=0", "assignee=99999999999999999999"])
def test_huge_numbers_in_queries_are_not_errors(engineer, query):
    assert engineer.get(f"/requests?{query}").status_code == 200
    assert engineer.get("/calls?before=99999999999999999999").status_code == 200
