"""The notification tests use the mail servers of tests/hotline/mail (Dovecot, SMTP, a Twilio fake)."""

from tests.hotline.mail.conftest import dovecot, folder, mail_settings, smtp, twilio  # noqa: F401
