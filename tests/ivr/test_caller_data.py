"""Callers' data (issue 12.7): information only from the contact phone; withheld lookups capped."""

from __future__ import annotations

import pytest

from hotline import registry
from ivr import flow
from ivr.store import CallStore
from tests.ivr.test_store import make_wav


@pytest.fixture
def store(any_db, make_settings):
    settings = make_settings(
        HOTLINE_DATABASE_URL=any_db.url,
        HOTLINE_LOOKUPS_PER_HOUR="3",
        HOTLINE_WITHHELD_LOOKUPS_PER_HOUR="4",
    )
    return CallStore(any_db, settings, "asterisk")


def _awaiting(store, phone: str | None) -> str:
    with store.db.session() as s:
        request = registry.open_request(s, kind="incident", channel="web", actor="cli", phone=phone)
        registry.change_status(s, request, "in_progress", actor="engineer:ivan")
        registry.ask_clarification(s, request, actor="engineer:ivan", question="Какая линия?")
        return request.number


def _leave_information(store, call_id: str, caller: str | None, number: str, wav) -> None:
    store.handle(call_id, flow.CallStarted(caller), from_number=caller)
    store.handle(call_id, flow.DigitsEntered("1"))
    assert store.handle(call_id, flow.DigitsEntered(number + "#")).state.step == "info_offer"
    store.handle(call_id, flow.DigitsEntered("1"))
    store.handle(call_id, flow.RecordingFinished(flow.Recording(f"rec-{call_id}", 2, str(wav))))


@pytest.mark.parametrize("caller", ["+79007778899", None])
def test_information_from_another_number_is_a_note_to_accept(store, tmp_path, caller):
    number = _awaiting(store, "+79005556677")
    _leave_information(store, "x1", caller, number, make_wav(tmp_path / "x.wav"))
    with store.db.session() as s:
        request = registry.get_request(s, number)
        assert request.status == "awaiting_info"  # not back to work by itself
        actions = [e.action for e in request.events]
        assert "information_unverified" in actions and "information_added" not in actions
        note = next(e.text for e in request.events if e.action == "information_unverified")
        assert ("+79007778899" if caller else "скрытого номера") in note
        assert len(request.attachments) == 1  # the recording is kept for the engineer


def test_information_from_the_contact_phone_in_another_format_is_accepted(store, tmp_path):
    number = _awaiting(store, "8 (900) 555-66-77")
    _leave_information(store, "x2", "+79005556677", number, make_wav(tmp_path / "y.wav"))
    with store.db.session() as s:
        request = registry.get_request(s, number)
        assert request.status == "in_progress"
        assert "information_added" in [e.action for e in request.events]


def test_withheld_lookups_are_limited_across_calls(store):
    with store.db.session() as s:
        number = registry.open_request(s, kind="incident", channel="web", actor="cli").number
    outcomes = []
    for i in range(6):  # a new call each time: the per-call limit alone would never stop it
        call_id = f"w{i}"
        store.handle(call_id, flow.CallStarted(None))
        store.handle(call_id, flow.DigitsEntered("1"))
        outcomes.append(store.handle(call_id, flow.DigitsEntered(number)).state.outcome)
    assert outcomes == ["status_heard"] * 4 + ["lookup_limit"] * 2
    # A caller who shows their number is not limited by the withheld ones.
    store.handle("n1", flow.CallStarted("+79991111111"), from_number="+79991111111")
    store.handle("n1", flow.DigitsEntered("1"))
    assert store.handle("n1", flow.DigitsEntered(number)).state.outcome == "status_heard"
