"""Real peers for the mail tests on loopback: Dovecot (IMAP), aiosmtpd (SMTP), a Twilio REST fake.

Dovecot runs as a private instance: its own config, sockets, logs and mail in a temp
dir, listening on a free loopback port; the system's dovecot is not touched. Every
test gets a mailbox folder of its own on it. HOTLINE_TEST_KEEP_DOVECOT=1 keeps its
temp dir (config, dovecot.log, mail) for a look after the run.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from imapclient import IMAPClient

from tests.conftest import missing_service
from tests.helpers import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "support@axon.system", "s3cret/pw"


def wait_for_port(port: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@dataclass
class Dovecot:
    port: int
    root: Path

    def url(self, folder: str) -> str:
        return f"imap://support%40axon.system:s3cret%2Fpw@127.0.0.1:{self.port}/{folder}"

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        return client


def _dovecot_config(root: Path, port: int) -> str:
    if os.geteuid() == 0:
        # Root in CI: Dovecot's own unprivileged users from the Debian package.
        internal, login = "dovecot", "dovenull"
        mail_user = pwd.getpwnam("dovecot")
    else:
        internal = login = pwd.getpwuid(os.geteuid()).pw_name
        mail_user = pwd.getpwuid(os.geteuid())
    (root / "mail").mkdir()
    os.chown(root / "mail", mail_user.pw_uid, mail_user.pw_gid)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
mail_location = maildir:{root}/mail/%u
first_valid_uid = {mail_user.pw_uid}
first_valid_gid = {mail_user.pw_gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
"""


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot IMAP server for this test session."""
    if not os.path.exists(DOVECOT):
        missing_service("dovecot is not installed (Debian package dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="hotline-dovecot-"))
    os.chmod(root, 0o755)  # Dovecot's unprivileged processes must reach the mail dir
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_dovecot_config(root, port))
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        if not wait_for_port(port):
            proc.kill()
            log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"dovecot did not start: {err.decode(errors='replace')}\n{log}")
        yield Dovecot(port=port, root=root)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        if os.environ.get("HOTLINE_TEST_KEEP_DOVECOT") is None:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def folder(dovecot: Dovecot) -> str:
    """A mailbox folder of this test's own."""
    name = f"t{uuid.uuid4().hex[:10]}"
    with dovecot.client() as client:
        client.create_folder(name)
    return name


def deliver(dovecot: Dovecot, folder: str, message: EmailMessage | bytes) -> None:
    """Put a message into the folder the way a mail server would (IMAP APPEND)."""
    raw = message if isinstance(message, bytes) else message.as_bytes()
    with dovecot.client() as client:
        client.append(folder, raw)


def folder_state(dovecot: Dovecot, folder: str) -> dict[str, int]:
    """How many messages the folder holds, and how many of them are unread."""
    with dovecot.client() as client:
        client.select_folder(folder, readonly=True)
        return {"all": len(client.search(["ALL"])), "unseen": len(client.search(["UNSEEN"]))}


@dataclass
class SmtpSink:
    """Messages aiosmtpd received."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)  # recipients answered 550
    login: tuple[str, str] | None = None  # offer SMTP AUTH accepting these credentials
    logins: list[str] = field(default_factory=list)
    controller: Any = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(BytesParser(policy=default_policy).parsebytes(envelope.content))  # type: ignore[arg-type]
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {}
        if self.login:
            # AUTH is offered without TLS (loopback); the test checks that the sender used it.
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False}
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        given = (data.login.decode(), data.password.decode()) if hasattr(data, "login") else None
        if given == self.login:
            self.logins.append(given[0])
        return AuthResult(success=given == self.login, handled=False)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""
    sink = SmtpSink(port=free_port())
    sink.start()
    yield sink
    sink.stop()


@dataclass
class TwilioFake:
    """Twilio's Messages REST resource, as the real API answers it."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: Any = None


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    """A local HTTP server speaking Twilio's 'create Message' API."""
    fake = TwilioFake(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", 0))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            auth = self.headers.get("Authorization", "")
            user = base64.b64decode(auth.split(" ", 1)[1]).decode() if auth.startswith("Basic ") else ""
            fake.requests.append({"path": self.path, "auth": user, "form": form})
            sid = f"SM{uuid.uuid4().hex}"
            body = json.dumps(
                {
                    "sid": sid,
                    "status": "queued",
                    "to": form.get("To"),
                    "from": form.get("From"),
                    "body": form.get("Body"),
                }
            ).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    fake.server = server
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def mail_settings(make_settings, dovecot: Dovecot, folder: str, smtp: SmtpSink):
    """Settings pointing at this test's mailbox folder and SMTP server, plus any variables."""

    def make(**env: str):
        return make_settings(
            HOTLINE_IMAP_URL=dovecot.url(folder),
            HOTLINE_SMTP_URL=smtp.url,
            **env,
        )

    return make
