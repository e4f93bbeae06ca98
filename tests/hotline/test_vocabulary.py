"""The vocabulary: every stored value has a Russian label, and the code uses no other values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotline import vocabulary
from hotline.vocabulary import CallEventKind, HistoryAction, Labelled, Outcome, label_of, plural
from ivr import flow

ROOT = Path(__file__).resolve().parents[2]
ENUMS = [
    obj
    for obj in vars(vocabulary).values()
    if isinstance(obj, type) and issubclass(obj, Labelled) and obj is not Labelled
]
PROPER_NAMES = {"Twilio", "Asterisk", "e-mail"}


@pytest.mark.parametrize("enum_type", ENUMS, ids=lambda e: e.__name__)
def test_every_value_has_a_russian_label(enum_type):
    assert len(enum_type) > 0
    for member in enum_type:
        assert member.label, f"{enum_type.__name__}.{member.name} has no label"
        assert re.search(r"[а-яё]", member.label, re.I) or member.label in PROPER_NAMES, member
        assert member.label != member.value


def test_values_other_engineers_add_this_round_are_named():
    assert Outcome("service_restart").label == "прерван перезапуском линии"
    for kind in ("prompt_missing", "recording_unwritable", "session_refused", "answer_timeout", "callback"):
        assert CallEventKind(kind).label


def test_stored_strings_stay_the_same():
    # Values are what the database holds: renaming one would orphan old rows.
    assert vocabulary.RequestKind.SERVICE == "service_request"
    assert vocabulary.RequestStatus.AWAITING_INFO == "awaiting_info"
    assert Outcome.TOO_MANY_ATTEMPTS == "too_many_attempts"
    assert vocabulary.Backend.CONSOLE == "console"


def test_unknown_values_are_shown_not_fatal():
    assert label_of(Outcome, "duty_unavailable") == "дежурный инженер недоступен"
    assert label_of(Outcome, "from_a_newer_version") == "from_a_newer_version"
    assert label_of(Outcome, None) == "—"
    assert label_of(Outcome, "x", default="") == ""


def test_every_flow_outcome_is_ranked():
    assert set(flow._OUTCOME_RANK) <= set(Outcome)
    assert all(isinstance(key, Outcome) for key in flow._OUTCOME_RANK)


def _sources(*folders: str) -> str:
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    return "\n".join(p.read_text(encoding="utf-8") for p in files if "fake" not in p.name)


def test_no_string_in_the_code_is_missing_from_the_vocabulary():
    """The strings typed where events, outcomes and actions are written are all known."""
    text = _sources("ivr", "hotline")
    events = set(re.findall(r"\.log\(\s*\"([a-z_]+)\"", text))
    events |= set(re.findall(r"log_event\(\s*session,\s*call,\s*\"([a-z_]+)\"", text))
    events |= set(re.findall(r"store\.log,?\(?\s*[\w.()]+,\s*\"([a-z_]+)\"", text))
    events |= set(re.findall(r"AGI_STARTED = \"([a-z_]+)\"", text))
    calls = _sources("ivr") + (ROOT / "hotline" / "calllog.py").read_text(encoding="utf-8")
    outcomes = set(re.findall(r"outcome(?:=| = |\s*=\s*)\"([a-z_]+)\"", calls))
    outcomes |= set(re.findall(r"call\.outcome, [\w.]+ = \"([a-z_]+)\"", calls))
    actions = set(re.findall(r"action=\"([a-z_]+)\"", text))
    actions |= set(re.findall(r"action=\"([a-z_]+)\" if", text))
    actions |= set(re.findall(r"else \"([a-z_]+_out)\"", text))
    assert events and outcomes and actions
    assert events - set(CallEventKind) == set()
    assert outcomes - set(Outcome) == set()
    assert actions - set(HistoryAction) == set()


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "заявок"),
        (1, "заявка"),
        (2, "заявки"),
        (4, "заявки"),
        (5, "заявок"),
        (11, "заявок"),
        (12, "заявок"),
        (14, "заявок"),
        (21, "заявка"),
        (22, "заявки"),
        (25, "заявок"),
        (101, "заявка"),
        (111, "заявок"),
        (112, "заявок"),
        (1002, "заявки"),
    ],
)
def test_plural_agrees_with_the_number(n, expected):
    assert plural(n, "заявка", "заявки", "заявок") == expected
