"""The Asterisk Manager Interface through the `asterisk-ami` package, kept alive.

This is the one module that imports `asterisk.ami` (the product's chosen AMI client,
0.1.7). `AmiConnection` hands out typed values only (`ivr.asterisk.amievents`) and
works around the package's quirks (docs/ami.md):
- its `timeout` is also the reader thread's socket timeout, so the timeout is long and
  a `Ping` heartbeat finds a dead connection;
- it reads Asterisk's banner outside its own `try`, so a connection reset while Asterisk
  starts ended the reader thread with a traceback: `_Client.listen` reports every end
  of the reader as a disconnect instead, and pending actions fail at once;
- listeners survive a reconnect, so the one listener is added once, never again;
- a callback that raises turns into a `NameError` inside the package, so callbacks here
  never raise; events go to the subscribers from a thread of our own, so a slow
  subscriber (the call log waiting for its database) never stalls the reader or the
  heartbeat's answers.
After Asterisk restarts it logs in again with backoff; a login that gets no answer
(Asterisk still starting) is retried the same way.

Errors: `AmiError` (HotlineError) — not connected, login refused, an action refused or
unanswered.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from asterisk.ami import Action, AMIClient

from hotline.errors import HotlineError
from ivr.asterisk.amievents import ActionResponse, AmiEvent, OriginateResponse, parse_event, parse_response

log = logging.getLogger(__name__)


class AmiError(HotlineError):
    """The AMI connection or an AMI action failed; the message says why."""


class AmiRefused(AmiError):
    """Asterisk answered an action with `Response: Error`; `refusal` is its Message, as sent."""

    def __init__(self, action: str, refusal: str):
        super().__init__(f"Asterisk отказал в {action}: {refusal}")
        self.refusal = refusal


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


Subscriber = Callable[[AmiEvent], None]


class _Client(AMIClient):
    """asterisk-ami's client with its reader thread made quiet and its socket closable.

    Subclassing keeps the package's internals (`_socket`, `_futures`) inside this class.
    """

    def __init__(self, host: str, port: int, timeout: float, on_reader_end: Callable[[object], None]):
        super().__init__(address=host, port=port, timeout=timeout)
        self._on_reader_end = on_reader_end

    def connect(self) -> None:
        try:
            super().connect()
        except OSError:
            self.close_socket()  # the package leaves a refused socket open
            raise

    def listen(self) -> None:
        # The package reads the banner before its own try: a reset or a timeout there
        # (Asterisk starting) would end this thread with a traceback on stderr.
        try:
            super().listen()
        except Exception as exc:  # noqa: BLE001 - whatever ended the reader, it is a disconnect
            self.finished.set()
            self._on_reader_end(exc)

    def close_socket(self) -> None:
        sock = self._socket
        if sock is None:
            return
        # close() alone does not wake a thread blocked in recv(); shutdown() does, so
        # the package's disconnect() does not wait out its long timeout.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self) -> None:
        self.close_socket()
        if self.finished is not None:
            self.disconnect()

    def is_reading(self) -> bool:
        return self.finished is not None and not self.finished.is_set()

    def forget(self, action_id: str) -> None:
        """Drop the package's future of an action that was never answered."""
        self._futures.pop(action_id, None)


@dataclass
class _Pending:
    """An action or an awaited event that a reader-thread callback completes."""

    done: threading.Event = field(default_factory=threading.Event)
    value: ActionResponse | OriginateResponse | None = None
    lost: bool = False  # the connection closed before the answer


class AmiConnection:
    """A logged-in AMI session that stays logged in (heartbeat, reconnect with backoff)."""

    name = "AMI"

    def __init__(
        self,
        address: AmiAddress,
        on_event: Subscriber | None = None,
        *,
        heartbeat: float = 15.0,
        backoff: tuple[float, float] = (1.0, 30.0),
        action_timeout: float = 10.0,
    ):
        self.address = address
        self.heartbeat = heartbeat
        self.backoff = backoff
        self.action_timeout = action_timeout
        self._subscribers: list[Subscriber] = [on_event] if on_event else []
        # The read timeout must outlast the quiet time between two heartbeats.
        self._client = _Client(address.host, address.port, heartbeat * 4, self._reader_ended)
        self._client.add_listener(on_event=self._event, on_disconnect=self._disconnected)
        self._send_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}  # action id -> its response
        self._awaited: dict[str, _Pending] = {}  # action id -> the event that answers it
        self._events: queue.SimpleQueue[AmiEvent | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self.connected = threading.Event()
        self.logins = 0
        self.last_error: str | None = None
        self._threads: list[threading.Thread] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Hand every event from now on to `subscriber` too (it runs in one dispatch thread)."""
        self._subscribers.append(subscriber)

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Connect and keep connected in background threads."""
        self._threads = [
            threading.Thread(target=self._supervise, name="ami", daemon=True),
            threading.Thread(target=self._dispatch, name="ami-events", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._close()  # wakes a login or a Ping waiting for its answer
        self._events.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
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
                    "AMI %s:%s: %s; retrying in %.1f s", self.address.host, self.address.port, exc, delay
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
        self._wake.clear()
        self._client.connect()
        response = self._send(
            Action("Login", {"Username": self.address.username, "Secret": self.address.secret})
        )
        if response is None:  # Asterisk accepts logins only once it has started
            raise AmiError("Asterisk did not answer the login")
        if not response.ok:
            raise AmiError(f"AMI login refused: {response.message or 'no reason given'}")

    def _alive(self) -> bool:
        if not self._client.is_reading():
            self.last_error = self.last_error or "connection closed"
            return False
        try:
            answer = self._send(Action("Ping"), timeout=min(self.action_timeout, self.heartbeat))
        except (AmiError, OSError) as exc:
            self.last_error = str(exc)
            return False
        if answer is None:
            self.last_error = self.last_error or "no answer to Ping"
            return False
        return True

    def _close(self) -> None:
        with self._close_lock:
            self._client.close()
        self._release_all()

    def _release_all(self) -> None:
        """Fail every action and awaited event at once: their answer cannot come now."""
        for table in (self._pending, self._awaited):
            for pending in list(table.values()):
                pending.lost = True
                pending.done.set()

    # --- actions ---------------------------------------------------------------

    def _send(self, action: Action, timeout: float | None = None) -> ActionResponse | None:
        """Send an action; its response, None if none came in time (AmiError: connection closed)."""
        action_id = action.keys.setdefault("ActionID", f"hotline-{uuid.uuid4().hex}")
        pending = self._pending[action_id] = _Pending()

        def arrived(response: Any) -> None:
            # Runs in the package's reader thread: must never raise.
            try:
                pending.value = parse_response({"Response": response.status, **response.keys})
            except Exception:  # noqa: BLE001
                log.exception("AMI: unreadable response to %s", action.name)
            finally:
                pending.done.set()

        try:
            with self._send_lock:
                self._client.send_action(action, arrived)
            if not self._client.is_reading():  # the reader ended before `pending` was listed
                pending.lost = True
            else:
                pending.done.wait(self.action_timeout if timeout is None else timeout)
        finally:
            self._pending.pop(action_id, None)
        if not isinstance(pending.value, ActionResponse):
            self._client.forget(action_id)
            if pending.lost:
                raise AmiError(f"the connection closed before Asterisk answered {action.name}")
            return None
        return pending.value

    def action(
        self, name: str, keys: dict[str, str], variables: dict[str, str] | None = None
    ) -> ActionResponse:
        """Run an action while connected; its response, AmiError if refused or unanswered."""
        if not self.connected.is_set():
            raise AmiError(f"нет связи с Asterisk AMI: {self.last_error or 'не подключено'}")
        try:
            response = self._send(Action(name, dict(keys), variables or {}))
        except OSError as exc:
            raise AmiError(f"AMI: {exc}") from exc
        if response is None:
            raise AmiError(f"Asterisk не ответил на {name}")
        if not response.ok:
            raise AmiRefused(name, response.message)
        return response

    def expect_originate(self, action_id: str) -> Callable[[float], OriginateResponse | None]:
        """Await the OriginateResponse of the Originate sent with `action_id`.

        Call before sending it; the returned function waits for the event, None if it did
        not come in time or the connection closed first.
        """
        pending = self._awaited[action_id] = _Pending()

        def wait(timeout: float) -> OriginateResponse | None:
            try:
                pending.done.wait(timeout)
                return pending.value if isinstance(pending.value, OriginateResponse) else None
            finally:
                self._awaited.pop(action_id, None)

        return wait

    # --- the package's callbacks (reader thread: they must never raise) -----------

    def _event(self, source: Any = None, event: Any = None, **_: Any) -> None:
        try:
            typed = parse_event({"Event": event.name, **event.keys})
            if isinstance(typed, OriginateResponse):
                pending = self._awaited.get(typed.action_id)
                if pending is not None:
                    pending.value = typed
                    pending.done.set()
            self._events.put(typed)
        except Exception:  # noqa: BLE001 - a raise here would end the reader thread
            log.exception("AMI: unreadable event %s", getattr(event, "name", event))

    def _disconnected(self, source: Any = None, error: Any = None, **_: Any) -> None:
        try:
            if self.connected.is_set():  # not a refused login we are closing ourselves
                self.last_error = f"disconnected: {error}" if error else "disconnected"
            self.connected.clear()
            self._release_all()
            self._wake.set()  # reconnect now rather than at the next heartbeat
        except Exception:  # noqa: BLE001
            pass

    def _reader_ended(self, error: object) -> None:
        """The reader thread ended before the package could report it (no banner)."""
        self.last_error = f"no banner from Asterisk: {type(error).__name__}: {error}"
        self._disconnected(error=error)

    # --- our dispatch thread ----------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            for subscriber in self._subscribers:
                try:
                    subscriber(event)
                except Exception:  # noqa: BLE001 - one subscriber's bug must not stop the others
                    log.exception("AMI: a subscriber failed on %s", type(event).__name__)
