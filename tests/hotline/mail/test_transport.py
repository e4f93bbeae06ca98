"""The SMTP sender against a real server, the plaintext rules for IMAP and SMTP, and which
mailbox messages count as new (the hotline's own keyword, not \\Seen) on a real Dovecot."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import make_msgid

import pytest
from imapclient import IMAPClient

from hotline.db import Database
from hotline.mail.compose import build_email, new_message_id
from hotline.mail.intake import poll_once
from hotline.mail.service import mailbox_for
from hotline.mail.transport import (
    READ_MAIL_WINDOW_DAYS,
    TAKEN_KEYWORD,
    DeliveryError,
    Mailbox,
    ServerURL,
    SmtpSender,
    _refuse_plaintext,
    allows_keyword,
    is_loopback,
)
from tests.helpers import free_port
from tests.hotline.mail.conftest import Dovecot, SmtpSink

pytestmark = pytest.mark.slow


def _message(settings):
    return build_email(
        settings,
        to="ivan@plant.example",
        subject="проверка",
        text="текст",
        message_id=new_message_id(settings),
        in_reply_to=None,
        references=[],
    )


def test_smtp_login_with_url_encoded_credentials(settings):
    sink = SmtpSink(port=free_port(), login=("support@axon.system", "p@ss:w/rd"))
    sink.start()
    try:
        url = f"smtp://support%40axon.system:p%40ss%3Aw%2Frd@127.0.0.1:{sink.port}"
        SmtpSender(url).send(_message(settings))
        assert len(sink.messages) == 1 and sink.logins == ["support@axon.system"]
        assert sink.messages[0]["Auto-Submitted"] == "auto-replied"
        with pytest.raises(DeliveryError) as refused:
            SmtpSender(f"smtp://support%40axon.system:wrong@127.0.0.1:{sink.port}").send(_message(settings))
        assert not refused.value.permanent  # a wrong password is fixed by the operator, then retried
        assert len(sink.messages) == 1
    finally:
        sink.stop()


def test_plaintext_is_allowed_on_loopback_only_unless_configured():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    remote = ServerURL.parse("imap://u:p@mail.plant.example/INBOX", {"imap": 143})
    assert remote.port == 143 and remote.path == "INBOX"
    assert "HOTLINE_MAIL_ALLOW_PLAINTEXT" in (_refuse_plaintext(remote, False) or "")
    assert _refuse_plaintext(remote, True) is None
    local = ServerURL.parse("smtp://127.0.0.1:2525", {"smtp": 587})
    assert _refuse_plaintext(local, False) is None


def test_mail_settings_are_checked(tmp_path):
    from hotline.errors import SettingsError
    from hotline.settings import load_settings

    base = {"HOTLINE_DATA_DIR": str(tmp_path), "HOTLINE_SECRET_KEY": "k"}
    settings = load_settings(
        {**base, "HOTLINE_IMAP_PROCESSED_FOLDER": "Обработано", "HOTLINE_OUTBOX_SECONDS": "5"}
    )
    assert (settings.imap_processed_folder, settings.outbox_seconds, settings.mail_allow_plaintext) == (
        "Обработано",
        5,
        False,
    )
    for name, value in [("HOTLINE_MAIL_ALLOW_PLAINTEXT", "maybe"), ("HOTLINE_OUTBOX_SECONDS", "0")]:
        with pytest.raises(SettingsError, match=name):
            load_settings({**base, name: value})


# Which messages are new: taken ones carry TAKEN_KEYWORD; \Seen is for people.

SEEN, TAKEN = b"\\Seen", TAKEN_KEYWORD.encode()


def _put(dovecot: Dovecot, folder: str, subject: str, *, seen: bool = False, days_old: float = 0) -> None:
    """APPEND a customer message, read by someone already if `seen`, arrived `days_old` ago."""
    msg = EmailMessage()
    msg["From"] = "ivan@plant.example"
    msg["To"] = "support@axon.system"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="plant.example")
    msg.set_content(f"текст: {subject}")
    arrived = datetime.now(UTC) - timedelta(days=days_old)
    with dovecot.client() as client:
        client.append(folder, msg.as_bytes(), flags=[SEEN] if seen else [], msg_time=arrived)


def _flags(dovecot: Dovecot, folder: str) -> dict[str, set[bytes]]:
    """Each message's flags by subject, as another IMAP client sees them."""
    with dovecot.client() as client:
        client.select_folder(folder, readonly=True)
        fetched = client.fetch(client.search(["ALL"]), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    return {
        _subject(data[b"BODY[HEADER.FIELDS (SUBJECT)]"]): set(data[b"FLAGS"]) for data in fetched.values()
    }


def _subject(header: bytes) -> str:
    return str(message_from_bytes(header, policy=default_policy)["Subject"])


def _person_reads_all(dovecot: Dovecot, folder: str) -> None:
    """A colleague opens the folder in a mail client: every message becomes \\Seen."""
    with dovecot.client() as client:
        client.select_folder(folder)
        client.add_flags(client.search(["ALL"]), [SEEN])


def _new_subjects(mailbox: Mailbox) -> set[str]:
    return {_subject(raw.split(b"\r\n\r\n", 1)[0]) for _, raw in mailbox.new_messages()}


def test_mail_a_person_read_before_the_poll_still_becomes_a_request(mail_settings, db, dovecot, folder):
    settings = mail_settings()
    _put(dovecot, folder, "Линия 3 стоит")
    _person_reads_all(dovecot, folder)  # before the hotline polls (or while it is down)

    with mailbox_for(settings) as mailbox:
        assert mailbox.keywords
        [result] = poll_once(settings, Database(settings.database_url), mailbox)
    assert result.outcome == "created"
    assert _flags(dovecot, folder)["Линия 3 стоит"] >= {SEEN, TAKEN}


def test_mail_the_hotline_took_is_not_taken_again_even_when_marked_unread(dovecot, folder):
    _put(dovecot, folder, "первое")
    with Mailbox(dovecot.url(folder)) as mailbox:
        [(uid, _)] = mailbox.new_messages()
        mailbox.mark_done(uid)
    assert _flags(dovecot, folder)["первое"] >= {SEEN, TAKEN}
    with dovecot.client() as client:  # a colleague marks it unread to come back to it later
        client.select_folder(folder)
        client.remove_flags([uid], [SEEN])

    with Mailbox(dovecot.url(folder)) as mailbox:
        assert list(mailbox.new_messages()) == []


def test_read_mail_older_than_the_window_is_not_taken(dovecot, folder):
    """A first start against a mailbox of old read mail takes only its recent read mail."""
    _put(dovecot, folder, "old read", seen=True, days_old=READ_MAIL_WINDOW_DAYS + 2)
    _put(dovecot, folder, "old unread", days_old=READ_MAIL_WINDOW_DAYS + 2)
    _put(dovecot, folder, "recent read", seen=True, days_old=READ_MAIL_WINDOW_DAYS - 1)
    _put(dovecot, folder, "new", days_old=0)

    with Mailbox(dovecot.url(folder)) as mailbox:
        assert _new_subjects(mailbox) == {"old unread", "recent read", "new"}


def test_mail_taken_by_an_older_hotline_is_recognised_not_taken_twice(mail_settings, db, dovecot, folder):
    """After an upgrade, recent read mail without the keyword is fetched once and is a duplicate."""
    settings = mail_settings()
    _put(dovecot, folder, "до обновления")
    with mailbox_for(settings) as mailbox:
        [first] = poll_once(settings, Database(settings.database_url), mailbox)
    with dovecot.client() as client:  # what the version that marked only \Seen left behind
        client.select_folder(folder)
        client.remove_flags(client.search(["ALL"]), [TAKEN])

    with mailbox_for(settings) as mailbox:
        [again] = poll_once(settings, Database(settings.database_url), mailbox)
        assert poll_once(settings, Database(settings.database_url), mailbox) == []
    assert (first.outcome, again.outcome) == ("created", "duplicate")
    assert _flags(dovecot, folder)["до обновления"] >= {SEEN, TAKEN}


def test_with_a_processed_folder_read_mail_is_taken_and_moved_with_its_mark(dovecot, folder):
    processed = f"{folder}-done"
    _put(dovecot, folder, "прочитано человеком")
    _person_reads_all(dovecot, folder)

    with Mailbox(dovecot.url(folder), processed_folder=processed) as mailbox:
        [(uid, _)] = mailbox.new_messages()
        mailbox.mark_done(uid)
        assert list(mailbox.new_messages()) == []
    assert _flags(dovecot, folder) == {}
    assert _flags(dovecot, processed)["прочитано человеком"] >= {SEEN, TAKEN}


def test_a_folder_refusing_keywords_keeps_unread_as_new_and_warns_once(dovecot, folder, monkeypatch, caplog):
    # Dovecot always allows keywords; this folder's SELECT answer is made to say it does not
    # (PERMANENTFLAGS without \*), as e.g. Exchange answers. The rest is the real server.
    real_select = IMAPClient.select_folder

    def select_without_keywords(self, folder, readonly=False):
        answer = real_select(self, folder, readonly)
        answer[b"PERMANENTFLAGS"] = tuple(f for f in answer[b"PERMANENTFLAGS"] if f != b"\\*")
        return answer

    monkeypatch.setattr(IMAPClient, "select_folder", select_without_keywords)
    _put(dovecot, folder, "read", seen=True)
    _put(dovecot, folder, "unread")

    with caplog.at_level(logging.WARNING, logger="hotline.mail"), Mailbox(dovecot.url(folder)) as mailbox:
        assert not mailbox.keywords
        [(uid, _)] = mailbox.new_messages()
        mailbox.mark_done(uid)
        assert list(mailbox.new_messages()) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "never taken in" in warnings[0] and folder in warnings[0]
    assert _flags(dovecot, folder) == {"read": {SEEN}, "unread": {SEEN}}


def test_keywords_are_used_only_where_permanentflags_allow_them():
    assert allows_keyword((b"\\Seen", b"\\Deleted", b"\\*"))
    assert allows_keyword((b"\\Seen", b"$hotlinetaken"))  # keywords are case-insensitive
    assert not allows_keyword((b"\\Seen", b"\\Deleted", b"$MDNSent"))
    assert not allows_keyword(None)  # no PERMANENTFLAGS: not trusted to keep one
