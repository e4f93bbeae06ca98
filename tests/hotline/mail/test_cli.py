"""`hotline mail` as an operator runs it, and the service `hotline serve` loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from sqlalchemy import select

from hotline.models import Request
from hotline.settings import load_settings
from tests.hotline.mail.conftest import deliver, folder_state
from tests.hotline.mail.test_intake import customer_mail

pytestmark = pytest.mark.slow
HOTLINE = [sys.executable, "-c", "from hotline.cli import main; main()"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    return {**clean, "HOTLINE_DATA_DIR": str(tmp_path / "data"), "HOTLINE_SECRET_KEY": "k", **extra}


def test_mail_once_takes_the_mailbox_in_and_answers(tmp_path, db, dovecot, folder, smtp):
    deliver(dovecot, folder, customer_mail("Сбой печати", "Принтер кодов остановился."))
    env = _env(
        tmp_path, HOTLINE_DATABASE_URL=db.url, HOTLINE_IMAP_URL=dovecot.url(folder), HOTLINE_SMTP_URL=smtp.url
    )
    done = subprocess.run([*HOTLINE, "mail", "--once"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    with db.session() as session:
        number = session.scalars(select(Request.number)).one()
    assert f"created {number}" in done.stdout
    assert "1 sent" in done.stdout
    assert number in smtp.messages[0]["Subject"]


def test_mail_without_configuration_is_one_error_line(tmp_path):
    done = subprocess.run([*HOTLINE, "mail"], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "HOTLINE_IMAP_URL" in done.stderr


def test_mail_service_picks_up_new_mail_at_once_and_stops_cleanly(tmp_path, db, dovecot, folder, smtp):
    env = _env(
        tmp_path,
        HOTLINE_DATABASE_URL=db.url,
        HOTLINE_IMAP_URL=dovecot.url(folder),
        HOTLINE_SMTP_URL=smtp.url,
        HOTLINE_MAIL_POLL_SECONDS="3600",  # only IDLE can bring the message in time
        HOTLINE_OUTBOX_SECONDS="3600",  # only the intake's wake-up can send the reply in time
    )
    proc = subprocess.Popen(
        [*HOTLINE, "mail"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        assert "mail started" in proc.stdout.readline()
        time.sleep(0.5)  # let the service reach IDLE; the message must arrive while it waits
        deliver(dovecot, folder, customer_mail("Линия 5", "Не работает сканер на линии 5."))
        deadline = time.monotonic() + 30
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(smtp.messages) == 1
        assert folder_state(dovecot, folder)["unseen"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    assert "mail stopped" in out


def test_serve_loads_the_mail_service_only_when_configured(tmp_path, db):
    [ep] = [ep for ep in entry_points(group="hotline.services") if ep.name == "mail"]
    make = ep.load()
    base = {"HOTLINE_DATA_DIR": str(tmp_path), "HOTLINE_DATABASE_URL": db.url, "HOTLINE_SECRET_KEY": "k"}
    assert make(load_settings(base), db) is None
    service = make(load_settings({**base, "HOTLINE_IMAP_URL": "imap://u:p@127.0.0.1:1/INBOX"}), db)
    assert service is not None and service.name == "mail"
