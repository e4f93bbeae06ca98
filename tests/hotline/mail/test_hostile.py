"""Hostile and broken e-mail on SQLite and PostgreSQL (issue 12): stored cleaned, or a dead letter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from hotline import deadletters
from hotline.db import Database
from hotline.mail import intake
from hotline.mail.intake import poll_once
from hotline.models import DeadLetter, Request, RequestEvent
from hotline.models import EmailMessage as EmailRow
from hotline.storage import resolve


class MemoryMailbox:
    """The part of `hotline.mail.transport.Mailbox` intake uses, over a dict of raw messages."""

    def __init__(self, *messages: bytes):
        self.unread = dict(enumerate(messages, start=1))
        self.done: list[int] = []
        self.fail_marking = False

    def new_messages(self) -> Iterator[tuple[int, bytes]]:
        yield from list(self.unread.items())

    def mark_done(self, uid: int) -> None:
        if self.fail_marking:
            raise ConnectionError("IMAP connection lost")
        self.done.append(uid)
        self.unread.pop(uid)


@pytest.fixture
def db(any_db):
    return any_db


def raw_mail(
    *,
    sender: bytes = b"Ivan <ivan@plant.example>",
    subject: bytes = b"Test",
    body: bytes = b"Hello",
    mid: bytes = b"",
) -> bytes:
    mid = mid or b"<m-%d@plant.example>" % abs(hash((sender, subject, body)))
    return (
        b"From: "
        + sender
        + b"\r\nTo: support@axon.system\r\nSubject: "
        + subject
        + b"\r\nMessage-ID: "
        + mid
        + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body + b"\r\n"
    )


def only_request(db: Database) -> Request:
    with db.session() as s:
        request = s.scalars(select(Request)).one()
        _ = [e.text for e in request.events]
        return request


@pytest.mark.parametrize(
    "mail",
    [
        raw_mail(subject="Линия\x00 3 \x1b[31mстоит\x1b[0m".encode()),
        raw_mail(body="Сканер\x00 не читает\x07 коды".encode()),
        raw_mail(sender=b'"' + b"N" * 300 + b'" <ivan@plant.example>'),
        raw_mail(sender=b"<" + b"a" * 300 + b"@plant.example>"),
    ],
    ids=["nul-escape-subject", "nul-body", "long-display-name", "long-address"],
)
def test_hostile_mail_becomes_a_request_cleaned_with_a_note(settings, db, mail):
    mailbox = MemoryMailbox(mail)
    [result] = poll_once(settings, db, mailbox)
    assert result.outcome == "created" and mailbox.done == [1]
    request = only_request(db)
    for value in (
        request.subject,
        request.description,
        request.contact_name or "",
        request.contact_email or "",
    ):
        assert "\x00" not in value and "\x1b" not in value and "\x07" not in value
    assert len(request.contact_name or "") <= 200
    assert request.contact_email is None or len(request.contact_email) <= 254
    [email_in] = [e for e in request.events if e.action == "email_in"]
    assert "•" in email_in.text  # the note of what was changed
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(DeadLetter)) == 0


def test_a_message_that_keeps_failing_becomes_a_dead_letter(settings, db, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the intake")

    monkeypatch.setattr(intake, "_file", broken)
    mail = raw_mail(subject=b"Broken")
    mailbox = MemoryMailbox(mail)
    for _ in range(deadletters.MAX_TRIES - 1):
        assert poll_once(settings, db, mailbox) == [] and mailbox.done == []  # tried again
    poll_once(settings, db, mailbox)
    assert mailbox.done == [1]  # given up: never offered again
    with db.session() as s:
        letter = s.scalars(select(DeadLetter)).one()
        assert (letter.state, letter.attempts, letter.source) == ("dead", deadletters.MAX_TRIES, "email")
        assert "a bug in the intake" in letter.error and "Broken" in letter.summary
        assert resolve(settings.data_dir, letter.path).read_bytes() == mail


def test_a_dead_letter_left_unread_is_not_tried_again(settings, db, monkeypatch):
    monkeypatch.setattr(intake, "_file", lambda *a, **k: 1 / 0)
    mail = raw_mail(subject=b"Again")
    mailbox = MemoryMailbox(mail)
    mailbox.fail_marking = True
    for _ in range(deadletters.MAX_TRIES):
        with contextlib.suppress(ConnectionError):  # dead at the last try; marking fails
            poll_once(settings, db, mailbox)
    mailbox.fail_marking = False
    monkeypatch.undo()  # even a fixed intake does not take a dead letter in by itself
    assert poll_once(settings, db, mailbox) == [] and mailbox.done == [1]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Request)) == 0


def test_mail_committed_but_not_marked_is_taken_once(settings, db):
    mail = raw_mail(subject=b"Once")
    mailbox = MemoryMailbox(mail)
    mailbox.fail_marking = True  # the crash between the commit and the mark
    with pytest.raises(ConnectionError):
        poll_once(settings, db, mailbox)
    mailbox.fail_marking = False
    [result] = poll_once(settings, db, mailbox)
    assert result.outcome == "duplicate" and mailbox.done == [1]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Request)) == 1
        assert s.scalar(select(func.count()).select_from(EmailRow)) == 1
        assert (
            s.scalar(select(func.count()).select_from(RequestEvent).where(RequestEvent.action == "created"))
            == 1
        )
