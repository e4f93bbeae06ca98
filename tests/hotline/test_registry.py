import pytest
from sqlalchemy import func, select

from hotline import registry
from hotline.errors import IllegalTransition, InvalidRequestNumber, UnknownRequest, UserError
from hotline.models import Request, RequestEvent, RequestStatus

S = RequestStatus


def _open(session, **kw):
    kw.setdefault("kind", "incident")
    kw.setdefault("channel", "phone")
    kw.setdefault("actor", "caller:+79001234567")
    return registry.open_request(session, **kw)


def test_open_request_numbers_and_history(any_db):
    with any_db.session() as s:
        first = _open(s, phone="+79001234567", subject="Сканер не читает коды")
        second = _open(s, kind="service_request", channel="email", email="a@plant.ru")
        numbers = first.number, second.number
    assert numbers == ("10008", "10019")
    with any_db.session() as s:
        req = registry.get_request(s, "10008#")
        assert req.status == S.NEW and req.contact_phone == "+79001234567"
        assert [(e.action, e.to_status) for e in req.events] == [("created", "new")]


def test_get_request_errors(any_db):
    with any_db.session() as s:
        with pytest.raises(InvalidRequestNumber):
            registry.get_request(s, "10007")
        with pytest.raises(UnknownRequest, match="10008"):
            registry.get_request(s, "10008")


ALLOWED = [
    (S.NEW, S.IN_PROGRESS),
    (S.IN_PROGRESS, S.AWAITING_INFO),
    (S.AWAITING_INFO, S.IN_PROGRESS),
    (S.IN_PROGRESS, S.PROCESSED),
    (S.AWAITING_INFO, S.PROCESSED),
    (S.PROCESSED, S.IN_PROGRESS),
]


def _walk_to(session, request, target):
    path = {
        S.NEW: [],
        S.IN_PROGRESS: [S.IN_PROGRESS],
        S.AWAITING_INFO: [S.IN_PROGRESS, S.AWAITING_INFO],
        S.PROCESSED: [S.IN_PROGRESS, S.PROCESSED],
    }[target]
    for step in path:
        registry.change_status(session, request, step, actor="engineer:ivanov")


@pytest.mark.parametrize("start", list(S))
@pytest.mark.parametrize("target", list(S))
def test_only_lifecycle_transitions_are_allowed(any_db, start, target):
    with any_db.session() as s:
        req = _open(s)
        _walk_to(s, req, start)
        number = req.number
    with any_db.session() as s:
        req = registry.get_request(s, number)
        events_before = len(req.events)
        if (start, target) in ALLOWED:
            registry.change_status(s, req, target, actor="engineer:ivanov", note="почему")
            assert req.status == target
            assert req.events[-1].from_status == start and req.events[-1].to_status == target
            assert req.events[-1].text == "почему" and req.events[-1].actor == "engineer:ivanov"
        else:
            with pytest.raises(IllegalTransition, match=f"{start.value} → {target.value}"):
                registry.change_status(s, req, target, actor="engineer:ivanov")
            assert req.status == start
            assert len(req.events) == events_before


def test_processed_goes_to_archive_and_reopen_takes_it_out(any_db):
    with any_db.session() as s:
        req = _open(s)
        _walk_to(s, req, S.PROCESSED)
        assert req.archived
        assert [r.number for r in registry.list_requests(s, archived=True)] == [req.number]
        registry.change_status(s, req, S.IN_PROGRESS, actor="engineer:ivanov", note="вернулась ошибка")
        assert not req.archived
        assert registry.list_requests(s, archived=True) == []


def test_clarification_and_information(any_db):
    with any_db.session() as s:
        req = _open(s)
        registry.change_status(s, req, S.IN_PROGRESS, actor="engineer:ivanov")
        registry.ask_clarification(s, req, actor="engineer:ivanov", question="Пришлите логи сервера")
        assert req.status == S.AWAITING_INFO
        registry.add_information(s, req, actor="email:a@plant.ru", text="логи во вложении")
        assert req.status == S.IN_PROGRESS
        actions = [e.action for e in req.events]
    assert actions == [
        "created",
        "status",
        "clarification_requested",
        "information_added",
        "status",
    ]


def test_engineers_text_is_cleaned_and_control_characters_alone_are_empty(any_db):
    with any_db.session() as s:
        req = _open(s)
        registry.change_status(s, req, S.IN_PROGRESS, actor="engineer:ivanov")
        for add in (
            lambda text: registry.ask_clarification(s, req, actor="engineer:ivanov", question=text),
            lambda text: registry.add_note(s, req, actor="engineer:ivanov", text=text),
            lambda text: registry.reply(s, req, actor="engineer:ivanov", text=text),
        ):
            with pytest.raises(UserError):
                add("\x07\x1b \u202e")
        assert req.status == S.IN_PROGRESS
        registry.ask_clarification(s, req, actor="engineer:ivanov", question="\x1b[31mКакая линия?\x07 ")
        assert req.clarification_question == "Какая линия?"  # read to the caller as it is stored


def test_illegal_status_and_kind_names(any_db):
    with any_db.session() as s:
        req = _open(s)
        with pytest.raises(UserError, match="unknown status"):
            registry.change_status(s, req, "done", actor="cli")
        with pytest.raises(UserError, match="unknown request kind"):
            _open(s, kind="bug")
        with pytest.raises(UserError):
            registry.add_note(s, req, actor="engineer:x", text="   ")


def test_first_response_is_set_by_engineers_only(any_db):
    with any_db.session() as s:
        req = _open(s)
        registry.record(s, req, actor="system", action="transcript", text="готово")
        assert req.first_response_at is None
        registry.add_note(s, req, actor="engineer:petrov", text="смотрю")
        assert req.first_response_at is not None


def test_a_rolled_back_request_leaves_no_trace(any_db):
    with pytest.raises(RuntimeError), any_db.session() as s:
        _open(s)
        raise RuntimeError("crash before commit")
    with any_db.session() as s:
        req = _open(s)
        # The counter rolled back with the request: 10008 was never handed out.
        assert req.number == "10008"
        assert s.scalar(select(func.count()).select_from(Request)) == 1
        assert s.scalar(select(func.count()).select_from(RequestEvent)) == 1
