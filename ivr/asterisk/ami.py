"""The Asterisk Manager Interface through the `asterisk-ami` package, kept alive.

`AmiConnection` wraps one `asterisk.ami.AMIClient` and works around its quirks
(docs/ami.md): its `timeout` is also the reader thread's socket timeout, so the
timeout is long and a `Ping` heartbeat finds a dead connection; listeners survive a
reconnect, so the one listener is added once, never again; a callback that raises
kills the reader thread (the package's `traceback` NameError), so every callback
here catches everything. After Asterisk restarts it logs in again with backoff.

Errors: `AmiError` (HotlineError) — not connected, login refused, an action refused.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from asterisk.ami import Action, AMIClient

from hotline.errors import HotlineError

log = logging.getLogger(__name__)


class AmiError(HotlineError):
    """The AMI connection or an AMI action failed; the message says why."""


@dataclass(frozen=True)
class AmiAddress:
    host: str
    port: int
    username: str
    secret: str


def parse_ami_url(url: str) -> AmiAddress:
    """`ami://user:secret@host:5038` into its parts; AmiError if a part is missing."""
    parts = urlsplit(url)
    if parts.scheme != "ami" or not parts.hostname or not parts.username or parts.password is None:
        raise AmiError("HOTLINE_AMI_URL must look like ami://user:secret@host:5038")
    return AmiAddress(parts.hostname, parts.port or 5038, unquote(parts.username), unquote(parts.password))


EventHandler = Callable[[str, dict[str, str]], None]


class AmiConnection:
    """A logged-in AMI session that stays logged in (heartbeat, reconnect with backoff)."""

    name = "AMI"

    def __init__(
        self,
        address: AmiAddress,
        on_event: EventHandler | None = None,
        *,
        heartbeat: float = 15.0,
        backoff: tuple[float, float] = (1.0, 30.0),
        action_timeout: float = 10.0,
    ):
        self.address = address
        self._on_event = on_event
        self.heartbeat = heartbeat
        self.backoff = backoff
        self.action_timeout = action_timeout
        # The read timeout must outlast the quiet time between two heartbeats.
        self._client = AMIClient(address=address.host, port=address.port, timeout=heartbeat * 4)
        self._client.add_listener(on_event=self._event, on_disconnect=self._disconnected)
        self._send_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._waiters: dict[str, tuple[threading.Event, list[dict[str, str]]]] = {}
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self.connected = threading.Event()
        self.logins = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Connect and keep connected in a background thread."""
        self._thread = threading.Thread(target=self._supervise, name="ami", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close()

    def wait_connected(self, timeout: float) -> None:
        """Block until logged in; AmiError naming the last failure otherwise."""
        if not self.connected.wait(timeout):
            raise AmiError(f"нет связи с Asterisk AMI: {self.last_error or 'нет ответа'}")

    def _supervise(self) -> None:
        delay = self.backoff[0]
        while not self._stopping.is_set():
            try:
                self._login()
            except (AmiError, OSError) as exc:
                self.last_error = str(exc)
                log.warning(
                    "AMI %s:%s: %s; retrying in %.0f s", self.address.host, self.address.port, exc, delay
                )
                self._close()
                # Not self._wake: closing a refused login fires on_disconnect, which sets it.
                self._stopping.wait(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            delay = self.backoff[0]
            self.connected.set()
            self.logins += 1
            log.info("AMI: logged in to %s:%s", self.address.host, self.address.port)
            while not self._stopping.is_set() and self._alive():
                self._wake.wait(self.heartbeat)
                self._wake.clear()
            self.connected.clear()
            self._close()

    def _login(self) -> None:
        try:
            self._client.connect()
        except OSError:
            sock = self._client._socket  # noqa: SLF001 - the package leaves a refused socket open
            if sock is not None:
                sock.close()
            raise
        response = self._send(
            Action("Login", {"Username": self.address.username, "Secret": self.address.secret})
        )
        if response is None:
            raise AmiError("Asterisk did not answer the login")
        if response.get("Response", "").lower() != "success":
            raise AmiError(f"AMI login refused: {response.get('Message', 'no reason given')}")

    def _alive(self) -> bool:
        if self._client.finished is None or self._client.finished.is_set():
            self.last_error = "connection closed"
            return False
        try:
            answer = self._send(Action("Ping"), timeout=min(self.action_timeout, self.heartbeat))
        except OSError as exc:
            self.last_error = str(exc)
            return False
        if answer is None:
            self.last_error = "no answer to Ping"
            return False
        return True

    def _close(self) -> None:
        with self._close_lock:
            sock = self._client._socket  # noqa: SLF001
            if sock is not None:
                # close() alone does not wake a thread blocked in recv(); shutdown() does,
                # so the package's disconnect() does not wait out its long timeout.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if self._client.finished is not None:
                self._client.disconnect()

    # --- actions ---------------------------------------------------------------

    def _send(self, action: Action, timeout: float | None = None) -> dict[str, str] | None:
        """Send an action; its response as a dict, None if none came in time."""
        action_id = action.keys.setdefault("ActionID", f"hotline-{uuid.uuid4().hex}")
        done = threading.Event()
        box: list[dict[str, str]] = []

        def arrived(response: Any) -> None:
            # Runs in the package's reader thread: must never raise.
            try:
                box.append({"Response": response.status, **response.keys})
            finally:
                done.set()

        with self._send_lock:
            self._client.send_action(action, arrived)
        if not done.wait(self.action_timeout if timeout is None else timeout):
            self._client._futures.pop(action_id, None)  # noqa: SLF001 - drop the orphan future
            return None
        return box[0] if box else None

    def action(
        self, name: str, keys: dict[str, str], variables: dict[str, str] | None = None
    ) -> dict[str, str]:
        """Run an action while connected; its response, AmiError if refused or unanswered."""
        if not self.connected.is_set():
            raise AmiError(f"нет связи с Asterisk AMI: {self.last_error or 'не подключено'}")
        try:
            response = self._send(Action(name, dict(keys), variables or {}))
        except OSError as exc:
            raise AmiError(f"AMI: {exc}") from exc
        if response is None:
            raise AmiError(f"Asterisk не ответил на {name}")
        if response["Response"].lower() == "error":
            raise AmiError(f"Asterisk отказал в {name}: {response.get('Message', '')}")
        return response

    def expect_event(self, action_id: str) -> Callable[[float], dict[str, str] | None]:
        """Register interest in the event answering `action_id` (e.g. OriginateResponse)."""
        done: threading.Event = threading.Event()
        box: list[dict[str, str]] = []
        self._waiters[action_id] = (done, box)

        def wait(timeout: float) -> dict[str, str] | None:
            try:
                return box[0] if done.wait(timeout) and box else None
            finally:
                self._waiters.pop(action_id, None)

        return wait

    # --- the package's callbacks (reader thread: they must never raise) -----------

    def _event(self, source: Any = None, event: Any = None, **_: Any) -> None:
        try:
            keys = {k: v for k, v in event.keys.items() if isinstance(v, str)}
            waiter = self._waiters.get(keys.get("ActionID", ""))
            if waiter is not None and event.name == "OriginateResponse":
                waiter[1].append({"Event": event.name, **keys})
                waiter[0].set()
            if self._on_event is not None:
                self._on_event(event.name, keys)
        except Exception:  # noqa: BLE001 - a raise here would end the reader thread
            log.exception("AMI event handler failed on %s", getattr(event, "name", event))

    def _disconnected(self, source: Any = None, error: Any = None, **_: Any) -> None:
        try:
            if self.connected.is_set():  # not a refused login we are closing ourselves
                self.last_error = f"disconnected: {error}" if error else "disconnected"
            self.connected.clear()
            self._wake.set()  # reconnect now rather than at the next heartbeat
        except Exception:  # noqa: BLE001
            pass
