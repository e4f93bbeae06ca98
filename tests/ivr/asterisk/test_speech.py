"""Free text on the Asterisk line: the engineer's question, synthesised at run time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hotline import registry
from hotline.db import Database
from hotline.settings import Settings
from tests.conftest import missing_service
from tests.ivr.asterisk.test_fastagi import prompts, serve
from voice_models.prompt_audio import is_prompt_audio


@pytest.fixture
def settings(make_settings) -> Settings:  # type: ignore[no-untyped-def]
    return make_settings(HOTLINE_BUSINESS_HOURS="mon-sun 00:00-23:59")


def request_with_question(db: Database, question: str | None) -> str:
    with db.session() as session:
        request = registry.open_request(session, kind="problem", channel="email", actor="system", subject="x")
        registry.change_status(session, request, "in_progress", actor="engineer:petrov")
        registry.ask_clarification(session, request, actor="engineer:petrov", question=question or "—")
        request.clarification_question = question
        return request.number


def test_the_question_is_synthesised_and_played(settings: Settings, db: Database) -> None:
    # Without a synthesiser the call plays the generic prompt (the test below): say so,
    # instead of failing on a prompt list without "clarification_asked".
    if not (shutil.which("RHVoice-test") or shutil.which("espeak-ng")) or not shutil.which("sox"):
        missing_service("espeak-ng (or RHVoice) and sox are not installed (scripts/test-services)")
    number = request_with_question(db, "Какая версия прошивки на сканере?")
    [trace] = serve(settings, db, {"script": ["1", number + "#", "*"]})
    heard = prompts(trace)
    at = heard.index("clarification_asked")
    question = Path(heard[at + 1] + ".wav")
    assert question.parent == settings.data_dir / "speech"
    assert is_prompt_audio(question)
    assert heard[at + 2] == "info_offer" and "info_awaited" not in heard
    # A second call hears the same file: it is made once per text.
    made = question.stat().st_mtime_ns
    [again] = serve(settings, db, {"script": ["1", number + "#", "*"], "uniqueid": "1700000001.0"})
    assert str(question.with_suffix("")) in again.heard
    assert question.stat().st_mtime_ns == made


def test_a_question_file_asterisk_cannot_read_is_replaced_by_the_generic_prompt(
    settings: Settings, db: Database
) -> None:
    # A folder Asterisk does not see (on another host) or cannot read: "does not exist
    # in any format". The intro has been played by then: the generic sentence follows it.
    if not (shutil.which("RHVoice-test") or shutil.which("espeak-ng")) or not shutil.which("sox"):
        missing_service("espeak-ng (or RHVoice) and sox are not installed (scripts/test-services)")
    number = request_with_question(db, "Какая линия?")
    [trace] = serve(settings, db, {"script": ["1", number + "#", "*"]})
    [question] = (settings.data_dir / "speech").glob("*.wav")
    elsewhere = {str(question.with_suffix(""))}
    [again] = serve(
        settings, db, {"script": ["1", number + "#", "*"], "uniqueid": "1700000001.0", "missing": elsewhere}
    )
    heard = prompts(again)
    at = heard.index("clarification_asked")
    assert heard[at + 1 : at + 3] == ["info_awaited", "info_offer"]
    assert str(question.with_suffix("")) not in again.heard


def test_without_a_synthesiser_the_generic_prompt_is_played(
    settings: Settings, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = request_with_question(db, "Какая линия?")
    monkeypatch.setenv("PATH", str(tmp_path))  # neither RHVoice nor espeak-ng nor sox
    [trace] = serve(settings, db, {"script": ["1", number + "#", "*"]})
    heard = prompts(trace)
    assert "clarification_asked" not in heard
    assert heard.index("status_awaiting_info") < heard.index("info_awaited") < heard.index("info_offer")


def test_no_question_plays_the_generic_prompt(settings: Settings, db: Database) -> None:
    number = request_with_question(db, None)
    [trace] = serve(settings, db, {"script": ["1", number + "#", "*"]})
    heard = prompts(trace)
    assert "info_awaited" in heard and "clarification_asked" not in heard
    assert not (settings.data_dir / "speech").exists()
