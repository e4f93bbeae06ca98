"""The SMTP sender against a real server, and the plaintext rules for IMAP and SMTP."""

from __future__ import annotations

import pytest

from hotline.mail.compose import build_email, new_message_id
from hotline.mail.transport import DeliveryError, ServerURL, SmtpSender, _refuse_plaintext, is_loopback
from tests.helpers import free_port
from tests.hotline.mail.conftest import SmtpSink

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
