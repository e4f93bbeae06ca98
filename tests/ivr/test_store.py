"""The flow against a real database: requests, files, call log, lookups cap."""

import threading
import wave
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline import registry
from hotline.db import Database
from hotline.models import Attachment, Call, Request
from ivr import flow
from ivr.store import CallStore
from voice_models.prompts import prompt_text


def make_wav(path: Path, seconds: float = 2.0) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x10\x00" * int(8000 * seconds))
    return path


@pytest.fixture
def store(any_db, make_settings):
    return CallStore(
        any_db, make_settings(HOTLINE_DATABASE_URL=any_db.url, HOTLINE_LOOKUPS_PER_HOUR="3"), "asterisk"
    )


def test_new_request_with_recording_and_call_log(store, tmp_path):
    store.handle("c1", flow.CallStarted("+79001112233"), from_number="+79001112233", to_number="+73435674530")
    store.handle("c1", flow.DigitsEntered("2"))
    store.handle("c1", flow.DigitsEntered("1"))
    wav = make_wav(tmp_path / "rec.wav")
    step = store.handle("c1", flow.RecordingFinished(flow.Recording("rec-1", 2.0, str(wav))))
    store.handle("c1", flow.Hangup())
    with store.db.session() as s:
        request = s.scalars(select(Request)).one()
        assert request.status == "new" and request.channel == "phone" and request.kind == "incident"
        assert request.contact_phone == "+79001112233"
        [att] = request.attachments
        assert att.external_id == "asterisk:rec-1" and att.transcription_state == "pending"
        assert att.filename == f"{request.number}-rec-1.wav"
        assert att.duration_seconds == pytest.approx(2.0)
        assert [e.action for e in request.events] == ["created", "attachment"]
        call = s.scalars(select(Call)).one()
        assert call.request_id == request.id and call.outcome == "request_created"
        assert call.ended_at is not None and call.answered_at is not None
        kinds = [e.kind for e in call.events if e.kind != "said"]
        assert kinds == ["call_started", "digits", "menu", "digits", "kind", "request_created", "hangup"]
        # What the caller heard, word for word, after each step (the call's page tells it).
        said = [e.detail for e in call.events if e.kind == "said"]
        assert said[0].startswith(prompt_text("greeting")) and len(said) == 4
        assert said[-1].startswith(prompt_text("request_created"))  # the new number read back
    assert step.state.recorded["rec-1"]["number"] == request.number


@pytest.mark.parametrize(
    "ref, suffix, expected",
    [
        ("RE123", ".wav", "10008-RE123.wav"),
        ("console-ab.wav", ".wav", "10008-console-ab.wav"),
        ("1700000000.1-1", ".wav", "10008-1700000000.1-1.wav"),
        ("dir/x.WAV", ".wav", "10008-x.WAV"),
    ],
)
def test_recording_file_names_have_one_suffix(ref, suffix, expected):
    from ivr.store import _recording_filename

    assert _recording_filename("10008", ref, suffix) == expected


def test_information_for_awaiting_request(store, tmp_path):
    with store.db.session() as s:
        request = registry.open_request(
            s, kind="incident", channel="web", actor="cli", phone="8 900 555-66-77"
        )
        registry.change_status(s, request, "in_progress", actor="engineer:ivan")
        registry.ask_clarification(s, request, actor="engineer:ivan", question="Какая линия?")
        number = request.number
    store.handle("c2", flow.CallStarted("+79005556677"), from_number="+79005556677")
    store.handle("c2", flow.DigitsEntered("1"))
    step = store.handle("c2", flow.DigitsEntered(number + "#"))
    assert step.state.step == "info_offer"
    store.handle("c2", flow.DigitsEntered("1"))
    store.handle("c2", flow.RecordingFinished(flow.Recording("rec-2", 3, str(make_wav(tmp_path / "i.wav")))))
    with store.db.session() as s:
        request = registry.get_request(s, number)
        assert request.status == "in_progress"
        assert "information_added" in [e.action for e in request.events]
        assert len(request.attachments) == 1


def test_lookup_cap_counts_across_calls_of_one_number(store):
    with store.db.session() as s:
        number = registry.open_request(s, kind="incident", channel="web", actor="cli").number
    heard = []
    for i in range(4):
        cid = f"cap{i}"
        store.handle(cid, flow.CallStarted("+79990000000"), from_number="+79990000000")
        store.handle(cid, flow.DigitsEntered("1"))
        step = store.handle(cid, flow.DigitsEntered(number))
        heard.append(step.state.outcome)
    assert heard == ["status_heard"] * 3 + ["lookup_limit"]
    # Another caller is not limited by this one.
    store.handle("other", flow.CallStarted("+79991111111"), from_number="+79991111111")
    store.handle("other", flow.DigitsEntered("1"))
    assert store.handle("other", flow.DigitsEntered(number)).state.outcome == "status_heard"


def test_stale_webhook_asks_again_without_changing_state(store):
    store.handle("c3", flow.CallStarted(None))
    step = store.handle("c3", flow.DigitsEntered("1"), seq=1)
    assert step.state.step == "number"
    again = store.handle("c3", flow.DigitsEntered("1"), seq=1)  # the same webhook once more
    assert again.state.step == "number" and isinstance(again.actions[-1], flow.Gather)
    with store.db.session() as s:
        assert s.scalars(select(Call)).one().flow_state["seq"] == 2


@pytest.mark.parametrize("call_existed", [True, False])
def test_the_same_webhook_in_two_workers_at_once_advances_the_call_once(store, make_settings, call_existed):
    """Twilio repeats a webhook while the first is still answered (two HTTP workers): the
    one that writes second finds the call moved on and answers as to a repeat."""
    other = CallStore(Database(store.db.url), store.settings, store.backend)
    if call_existed:
        store.handle("c9", flow.CallStarted(None), seq=0)
        event, seq = flow.DigitsEntered("1"), 1
    else:
        event, seq = flow.CallStarted("+79001112233"), 0
    transaction, move, make = store.rows.transaction, store.rows.move, store.rows.make
    raced: list[flow.Step] = []

    def other_worker_first():
        if not raced:  # the other worker's copy is written between this one's read and its write
            raced.append(other.handle("c9", event, seq=seq, from_number="+79001112233"))

    @contextmanager
    def transaction_second(**kwargs):
        other_worker_first()
        with transaction(**kwargs) as opened:
            yield opened

    def move_second(*args):
        other_worker_first()
        return move(*args)

    def make_second(*args):
        other_worker_first()
        return make(*args)

    store.rows.transaction, store.rows.move, store.rows.make = transaction_second, move_second, make_second
    step = store.handle("c9", event, seq=seq, from_number="+79001112233")
    assert raced[0].state.seq == seq + 1
    with store.db.session() as s:
        call = s.scalars(select(Call)).one()
        kinds = [e.kind for e in call.events]
        assert call.flow_state == raced[0].state.to_json()  # the first write stands
        if call_existed:
            assert step.state.seq == seq + 1 and kinds.count("stale_webhook") == 1
            assert kinds.count("digits") == 1
        else:
            assert kinds.count("call_started") == 1  # a repeated start is not a second call
            assert call.from_number == "+79001112233"
    other.db.dispose()


def test_hangup_from_backend_closes_the_call(store):
    store.handle("c4", flow.CallStarted(None))
    store.hang_up("c4", backend_status="completed", duration_seconds=17)
    store.hang_up("c4", backend_status="completed", duration_seconds=17)
    with store.db.session() as s:
        call = s.scalars(select(Call)).one()
        assert (call.outcome, call.backend_status, call.duration_seconds) == ("abandoned", "completed", 17)
        assert [e.kind for e in call.events].count("hangup") == 1
        assert s.scalars(select(Attachment)).all() == []


def test_status_callback_first_fills_the_caller_later(store):
    """A call first seen without its number (a log event) gets it from a later webhook."""
    store.log("c5", "call_status", "ringing")
    store.handle("c5", flow.CallStarted("+79007778899"), from_number="+79007778899", to_number="+73435674530")
    with store.db.session() as s:
        call = s.scalars(select(Call)).one()
        assert (call.from_number, call.to_number) == ("+79007778899", "+73435674530")
        assert [e.kind for e in call.events] == ["call_status", "call_started", "said"]
        assert call.flow_state["step"] == "menu" and call.flow_state["seq"] == 1


def test_writers_of_one_sqlite_file_queue_across_stores(db, make_settings):
    """Two stores on one database file (as two HTTP worker processes) never write at once."""
    first = CallStore(db, make_settings(HOTLINE_DATABASE_URL=db.url), "twilio")
    second = CallStore(Database(db.url), make_settings(HOTLINE_DATABASE_URL=db.url), "twilio")
    entered = threading.Event()
    with first.rows.writer_lock:
        worker = threading.Thread(target=lambda: (second.rows.writer_lock.__enter__(), entered.set()))
        worker.start()
        assert not entered.wait(0.3)  # held by the first store's lock file
    assert entered.wait(10)
    second.rows.writer_lock.__exit__(None, None, None)
    worker.join(10)


def test_a_step_is_claimed_once_among_racing_threads(store):
    """A number said on a stream and keys typed (or a second stream) race for one step."""
    store.handle("c9", flow.CallStarted("+79001112233"))
    seq = store.handle("c9", flow.DigitsEntered("1")).state.seq  # the number question
    assert store.step_of("c9") == seq
    barrier, won = threading.Barrier(4), []

    def claim() -> None:
        barrier.wait()
        won.append(store.claim("c9", seq))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False, False, False, True]
    # The webhook of the claimed step only asks again; given back, the step takes keys again.
    assert store.handle("c9", flow.DigitsEntered("*"), seq=seq).state.step == flow.StepName.NUMBER
    store.release("c9", seq, "Twilio не перенаправил звонок", digits="14188")
    assert store.handle("c9", flow.DigitsEntered("*"), seq=seq).state.step == flow.StepName.MENU
    seq = store.handle("c9", flow.DigitsEntered("1"), seq=seq + 1).state.seq  # the number question again
    assert store.claim("c9", seq)
    store.handle("c9", flow.DigitsEntered("*"), seq=seq + 1)  # keys typed on the question asked again
    store.release("c9", seq, "поздно")  # the call moved on since the claim: nothing is given back
    assert store.step_of("c9") == seq + 2
    store.handle("c9", flow.Hangup())
    assert store.step_of("c9") is None and not store.claim("c9", seq + 1) and not store.claim("nobody", 0)
    with store.db.session() as s:
        call = s.scalars(select(Call)).one()
        passed = [(e.detail, e.data) for e in call.events if e.kind == "speech_not_passed"]
        assert passed == [("Twilio не перенаправил звонок", {"digits": "14188"}), ("поздно", {})]
