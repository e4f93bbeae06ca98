"""Twilio webhooks answered ahead of the database, the call log written behind them.

Most webhooks of a call (the greeting, the menu, a repeated question, a wrong key)
change nothing but the call's own log. They used to read the call's row, run the flow
and commit the step before answering: on SQLite every webhook of every worker queued
for the one writer, on PostgreSQL each was two round trips plus the server's work, on
two cores shared with the HTTP workers. Now:

- **The call's state travels in its action URLs** (`s=`, next to `seq=`): the flow
  state after the step, as compact JSON in base64url, without the caller's number
  (it comes with every webhook in `From`). Twilio signs the whole URL it requests with
  the account's auth token (`X-Twilio-Signature`), so a state that comes back is one
  this service handed out: nobody without the token can make Twilio or the hotline
  take another. It is still read as untrusted (`state_from_token`: known fields,
  types and lengths, or the row is read as before). A state longer than `MAX_TOKEN`
  (an engineer's long question) is left out of the URL, and that step reads the row.
- **The step's writes are queued** (`LogQueue.send`): one frame over a Unix stream
  connection of the worker thread's own to the call-log writer (`serve_queue`, a
  process `hotline serve` starts: `make_service`), which writes whatever has arrived
  in one transaction through `ivr.logwriter.write_batch`, as the FastAGI calls' log is
  written; each call's steps in `seq` order, whichever worker answered them. (A Unix
  datagram socket, one queue for every sender, holds only 10 datagrams here.)
- **A step that needs the database** (a status lookup, a request, the end of the call
  reported by Twilio, the recording callback) first waits until the writer has
  committed everything queued before it (`LogQueue.flush`, on a connection of its
  own: the writer accepts and reads every connection before it answers), then runs on
  the row as before. So does every step of a call with a recording in progress or
  saved (`ahead_of_row`): the recording callback moves the row's state between two
  webhooks, which the URL's state does not know.

The writer never applies a state older than the row's (`seq`), so a webhook Twilio
repeats late cannot take the call back. What is lost: writes the writer received and
had not committed when it was killed (milliseconds; it is started again at once), as
for FastAGI. When `serve` itself is killed, the writer removes its socket, writes what
it holds and every send made before, and ends. SIGTERM or SIGINT sent to the writer
itself (systemd stopping every process of the unit, Ctrl+C) is a stop too, and a
writer that stopped so is not started again.
With the database down the writer keeps what it received (at most
`MAX_HELD` writes, then it reads no more) and retries; the webhooks that need the
database get the apology, as before. With live speech on (HOTLINE_LIVE_SPEECH) every
webhook reads the row (`usable`), since a media stream may move the call on between
two webhooks. Without the writer (no `hotline serve`, or it is being restarted) every
webhook runs on the row, as before.

The socket is `twilio-log.sock` in the data dir's folder of this host (`run/<host>/`,
`Settings.run_dir`), mode 0600: only the service's own
user can queue (who can write the socket can write the database file as well).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
import multiprocessing
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from hotline import callrows
from hotline.db import Database, DatabaseUnavailable
from hotline.models import utcnow
from hotline.settings import Settings
from ivr import flow
from ivr.flow import CallState, StepName
from ivr.logwriter import NICE, STOP_SECONDS, CallWrites, pack_step, write_batch
from ivr.store import CallStore, DbCallPort, _CallRow, _NeedsLock

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

SOCKET_NAME = "twilio-log.sock"
#: Longest state put into a URL (Twilio's URLs may be a few thousand characters).
MAX_TOKEN = 1200
#: A frame of the queue: far above a step's writes (~1 KB).
MAX_FRAME = 256 * 1024
#: Seconds a worker waits to hand a step to the writer before it runs the step on the row.
SEND_SECONDS = 2.0
#: Bytes a worker's connection may hold for the writer (the kernel caps it at
#: net.core.wmem_max; a step's write is ~400 bytes, ~1.3 KB of buffer).
SEND_BUFFER = 1 << 20
#: Seconds a step that needs the database waits for the queue before it (then the apology).
#: Twilio gives the whole exchange 15 s, then plays its own error, in English (FIELD-NOTES).
FLUSH_SECONDS = 8.0
#: Seconds the writer lets writes gather after a batch (a flush ends the wait).
GATHER_SECONDS = 0.02
#: Writes the writer holds at most while the database is down (about 1 KB each); beyond
#: it reads no more, and the webhooks' steps run on the row (the apology, while it is down).
MAX_HELD = 100_000
#: Seconds between tries while the database is down.
RETRY_SECONDS = 1.0

_WRITE, _FLUSH, _STOP = b"W", b"F", b"S"
#: One step's writes as queued: the call's id, its numbers, whether it starts, the
#: step's `seq` (the state after it), the `pack`ed write.
Queued = tuple[str, str | None, str | None, bool, int, bytes]


#: The longest path of a Unix socket (sun_path is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107


def socket_path(settings: Settings) -> Path:
    """The writer's socket, in this host's run folder: hosts sharing the data dir each run
    their own writer, and one's start must not unlink the other's socket."""
    return settings.run_dir / SOCKET_NAME


# --- the state in the action URL ------------------------------------------------------

_DEFAULTS = CallState().to_json()
_STEPS = frozenset(StepName)
_TEXT_FIELDS = ("number", "question", "spoken", "kind", "outcome")


#: What a token holds: no seq (the URL's own), no caller (in every webhook's `From`), and
#: no recording (a state with one is not put in a URL: `ahead_of_row`).
_IN_TOKEN = frozenset(_DEFAULTS) - {"seq", "caller", "pending", "recorded"}


def state_token(state: CallState) -> str:
    """The state for the action URL ("" if the step after it must read the row, or it is
    too long to go there)."""
    if not ahead_of_row(state):
        return ""
    return _token(tuple((k, v) for k, v in state.__dict__.items() if k in _IN_TOKEN))


@functools.lru_cache(maxsize=4096)  # a few states are most of the webhooks (the menu, the number)
def _token(items: tuple[tuple[str, Any], ...]) -> str:
    data = {k: v for k, v in items if v != _DEFAULTS[k]}
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return token if len(token) <= MAX_TOKEN else ""


def state_from_token(token: str | None, seq: int, caller: str | None) -> CallState | None:
    """The state a webhook's URL carries, checked field by field; None if there is none."""
    if not token or len(token) > MAX_TOKEN or seq < 0:
        return None
    data = _checked(token)
    return None if data is None else CallState.from_json({**data, "seq": seq, "caller": caller})


@functools.lru_cache(maxsize=4096)
def _checked(token: str) -> dict[str, Any] | None:
    """The fields of a token as `state_token` makes them: known names, types and lengths."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict) or not data.keys() <= _IN_TOKEN:
        return None
    if data.get("step", _DEFAULTS["step"]) not in _STEPS:
        return None
    for key in ("tries", "number_tries"):
        value = data.get(key, 0)
        if type(value) is not int or not 0 <= value < 100:
            return None
    for key in _TEXT_FIELDS:
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 2000):
            return None
    return data


# --- the webhooks' side ----------------------------------------------------------------


class LogQueue:
    """A worker's end of the call-log queue (thread-safe)."""

    def __init__(self, path: Path):
        self.path = str(path)
        self._local = threading.local()
        self._sockets: list[socket.socket] = []  # closed with the queue, however it goes
        weakref.finalize(self, _close_all, self._sockets)

    def send(self, message: tuple[Any, ...]) -> bool:
        """Queue a step's writes; False if there is no writer to take them."""
        frame = _frame(_WRITE, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        if len(frame) > MAX_FRAME:
            return False
        # A connection per thread: a lock around one would be held across the GIL's
        # hand-overs, every thread of the worker queued behind it.
        for _ in range(2):  # a writer started again: a new connection, once
            conn = getattr(self._local, "conn", None)
            try:
                if conn is None:
                    conn = self._local.conn = self._sender()
                    self._sockets.append(conn)
                conn.sendall(frame)
                return True
            except OSError:  # no socket, no writer, or it ended: the step goes on the row
                if conn is not None:
                    conn.close()
                self._local.conn = None
        return False

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait until the writer has committed everything queued so far by every worker
        (True at once if there is no writer: nothing can be waiting in it); False if the
        time ran out."""
        nonce = os.urandom(8)
        try:
            conn = self._connect(timeout)
        except OSError:
            return True  # no socket, or no writer behind it
        with conn:
            try:
                conn.sendall(_frame(_FLUSH, nonce))
                answer = b""
                while len(answer) < len(nonce):
                    got = conn.recv(len(nonce) - len(answer))
                    if not got:
                        return True  # the writer ended: what it held is gone, nothing to wait for
                    answer += got
            except TimeoutError:
                return False
            except OSError:
                return True
        return answer == nonce

    def _sender(self) -> socket.socket:
        # A blocking socket whose kernel times the send out: Python's own timeout polls
        # before every send, and a Unix socket polls writable only while what it holds is
        # under a quarter of its buffer (~40 steps). The writer pauses between batches,
        # so one send in fifty waited ~10 ms for it (strace). Now a send waits only when
        # the buffer is full, and the buffer is as large as the system lets it be.
        conn = self._connect(SEND_SECONDS)
        conn.settimeout(None)
        seconds = int(SEND_SECONDS)
        timeval = struct.pack("ll", seconds, int((SEND_SECONDS - seconds) * 1e6))
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)  # capped at wmem_max
        return conn

    def _connect(self, timeout: float) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(self.path)
        except OSError:
            conn.close()
            raise
        return conn


def _frame(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def ahead_of_row(state: CallState) -> bool:
    """True if a step may run on this state from the URL: no recording is in progress or
    saved in this call. Twilio's recording callback changes the row's state (what was
    saved, for which request) between two webhooks, which the URL's state does not know;
    those steps run on the row, as does one whose state may be moved by a media stream."""
    return state.pending is None and not state.recorded


def _needs_lock() -> Any:
    raise _NeedsLock


def _settled(method: Callable[P, R]) -> Callable[P, R]:
    """A store method that reads or writes the call's row: the queue before it is written first."""

    @functools.wraps(method)
    def settled(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, QueuedCallStore)
        store.settle()
        return method(*args, **kwargs)

    return settled


class QueuedCallStore(CallStore):
    """The webhooks' `CallStore` when the call-log writer runs: steps ahead, writes behind."""

    def __init__(self, db: Database, settings: Settings, backend: str, queue: LogQueue):
        super().__init__(db, settings, backend)
        self.queue = queue

    def settle(self) -> None:
        """Everything queued so far, committed (DatabaseUnavailable if it cannot be)."""
        if not self.queue.flush():
            raise DatabaseUnavailable("the call log is not written yet (the database is unavailable)")

    def step(
        self,
        call_id: str,
        event: flow.Event,
        state: CallState | None,
        *,
        from_number: str | None = None,
        to_number: str | None = None,
        seq: int | None = None,
    ) -> flow.Step:
        """Run the event on `state` (from the URL) and queue its writes; on the row as
        `handle` does if there is no state, it needs the database, or nothing queues it."""
        if state is not None and ahead_of_row(state):  # (no QueuedCallStore with live speech: `usable`)
            starts = isinstance(event, flow.CallStarted)
            port = DbCallPort(_needs_lock, self.settings, _CallRow({"id": 0, "from_number": from_number}))  # type: ignore[arg-type]
            try:
                step = flow.handle(state, event, port, self.config)
            except _NeedsLock:
                pass
            else:
                write = pack_step(step, answered=utcnow() if starts else None)
                if self.queue.send((call_id, from_number, to_number, starts, step.state.seq, write)):
                    return step
        return self.handle(call_id, event, from_number=from_number, to_number=to_number, seq=seq)

    handle = _settled(CallStore.handle)
    hang_up = _settled(CallStore.hang_up)
    save_recording = _settled(CallStore.save_recording)
    known = _settled(CallStore.known)
    step_of = _settled(CallStore.step_of)
    claim = _settled(CallStore.claim)
    release = _settled(CallStore.release)
    log = _settled(CallStore.log)


# --- the writer ------------------------------------------------------------------------


def serve_queue(url: str, path: str) -> None:
    """The writer process: write what the webhooks queue, answer flushes after the commit."""
    with contextlib.suppress(OSError):
        os.nice(NICE)  # behind the workers answering callers
    db = Database(url)
    parent = multiprocessing.parent_process()
    # SIGTERM or SIGINT sent to it directly (systemd stopping every process of a unit, Ctrl+C
    # in a terminal): a stop like `serve`'s, what it holds written first. The handler does
    # nothing; the signal's byte on the wake-up pipe wakes the writer's select.
    woken, wake = os.pipe()
    os.set_blocking(wake, False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    signal.set_wakeup_fd(wake)
    try:
        _Writer(callrows.CallRowStore(db.engine), path, parent.sentinel if parent else None, woken).run()
    finally:
        db.dispose()


class _Writer:
    """The writer's loop: reads every worker's connection, writes what came, one transaction a turn."""

    def __init__(
        self, rows: callrows.CallRowStore, path: str, parent: int | None = None, signalled: int | None = None
    ):
        self.rows, self.path = rows, path
        self.signalled = signalled  # readable once SIGTERM or SIGINT came (serve_queue)
        # Readable once `serve` is gone, even killed (SIGKILL, the OOM killer): the writer
        # then writes what it holds and ends, instead of living on beside the next one.
        self.parent = parent
        self.orphaned: float | None = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        umask = os.umask(0o177)  # the socket is made 0600
        try:
            self.listener.bind(path)
        finally:
            os.umask(umask)
        self.inode = os.stat(path).st_ino  # a later writer's socket on the path is not ours to remove
        self.listener.listen(256)
        self.listener.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.pause = selectors.DefaultSelector()
        self.pause.register(self.listener, selectors.EVENT_READ)
        for fd in (parent, signalled):
            if fd is not None:
                self.selector.register(fd, selectors.EVENT_READ)
                self.pause.register(fd, selectors.EVENT_READ)
        self.buffers: dict[socket.socket, bytearray] = {}
        self.writes: list[Queued] = []
        self.flushes: list[tuple[socket.socket, bytes]] = []
        self.stopping = False

    def run(self) -> None:
        try:
            while True:
                if self.stopping:
                    # No new connection, then everything sent before the stop: a send
                    # that returned is in a connection's buffer or in one not accepted yet.
                    self._unlink()
                    self._drain()
                    if not self.writes:
                        break
                elif len(self.writes) < MAX_HELD:  # beyond, the workers' sends wait (then the row)
                    self._take(RETRY_SECONDS if self.writes else None)
                else:  # reading no more, but still told when `serve` is gone or signalled
                    for key, _ in self.pause.select(0):
                        self._control(key.fileobj)
                if self.writes and not _write(self.rows, self.writes):
                    if self.orphaned is not None and time.monotonic() - self.orphaned > STOP_SECONDS:
                        log.error(
                            "call-log writer: serve is gone and the database down: %d writes lost",
                            len(self.writes),
                        )
                        return
                    # The database is down: keep them, answer no flush, try again.
                    time.sleep(RETRY_SECONDS)
                    continue
                wrote = bool(self.writes)
                self.writes.clear()
                for conn, nonce in self.flushes:
                    with contextlib.suppress(OSError):  # that worker has gone
                        conn.send(nonce)
                self.flushes.clear()
                if wrote and not self.stopping:
                    # Let writes gather. A worker's send to a writer asleep here only
                    # queues its bytes; to one waiting in select on its connection it
                    # also wakes it, ~25 µs of the worker's time a send. A flush comes
                    # on a new connection: it ends the pause at once (the listener is
                    # all this select waits on).
                    self.pause.select(GATHER_SECONDS)
        finally:
            for conn in list(self.buffers):
                self._close(conn)
            self.pause.close()
            self.selector.close()
            self.listener.close()
            self._unlink()

    def _unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)

    def _take(self, timeout: float | None) -> None:
        """Read what the workers sent (waiting up to `timeout` for something)."""
        for key, _ in self.selector.select(timeout):
            if key.fileobj is self.listener:
                self._accept()
            elif not self._control(key.fileobj):
                self._read(cast(socket.socket, key.fileobj))
        if self.flushes:
            # Everything any worker sent before this flush is in some connection's
            # buffer, or in one not accepted yet: read them all first.
            self._drain()

    def _drain(self) -> None:
        self._accept()
        for conn in list(self.buffers):
            self._read(conn)

    def _control(self, fileobj: Any) -> bool:
        """Act on `serve`'s end or a signal to this process; False if `fileobj` is neither."""
        if fileobj == self.parent:
            self.stopping = True
            if self.orphaned is None:
                self.orphaned = time.monotonic()
                log.error("call-log writer: serve is gone; writing what it holds, then ending")
        elif fileobj == self.signalled:
            os.read(fileobj, 64)
            self.stopping = True
        else:
            return False
        return True

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            self.buffers[conn] = bytearray()
            self.selector.register(conn, selectors.EVENT_READ)

    def _read(self, conn: socket.socket) -> None:
        buffer = self.buffers[conn]
        while True:
            try:
                data = conn.recv(256 * 1024)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._close(conn)  # a half-sent frame of a worker that ended is dropped
                break
            buffer += data
        while len(buffer) >= 5 and len(buffer) >= 5 + (size := int.from_bytes(buffer[:4], "big")):
            kind, payload = buffer[4:5], bytes(buffer[5 : 5 + size])
            del buffer[: 5 + size]
            if kind == _WRITE:
                try:
                    self.writes.append(_queued(pickle.loads(payload)))
                except Exception:  # noqa: BLE001 - not a frame of ours: that connection goes
                    log.error("call-log writer: a malformed write, connection closed")
                    self._close(conn)
                    return
            elif kind == _FLUSH:
                self.flushes.append((conn, payload))
            elif kind == _STOP:
                self.stopping = True
        if len(buffer) >= 4 and int.from_bytes(buffer[:4], "big") > MAX_FRAME:
            self._close(conn)  # not a frame of ours

    def _close(self, conn: socket.socket) -> None:
        if conn in self.buffers:
            self.selector.unregister(conn)
            del self.buffers[conn]
        conn.close()


def _queued(message: Any) -> Queued:
    """A write as `QueuedCallStore.step` sends it, or ValueError."""
    if not (isinstance(message, tuple) and len(message) == 6 and isinstance(message[0], str)):
        raise ValueError("not a queued write")
    if not (isinstance(message[4], int) and isinstance(message[5], bytes)):
        raise ValueError("not a queued write")
    return message  # type: ignore[return-value]


def _batch(writes: list[Queued]) -> list[CallWrites]:
    """The writes grouped by call, each call's in the order of its steps (two workers'
    connections are read in any order), the calls in the order they came."""
    calls: dict[str, list[Queued]] = {}
    for write in writes:
        calls.setdefault(write[0], []).append(write)
    batch: list[CallWrites] = []
    for call_id, steps in calls.items():
        steps.sort(key=lambda w: w[4])
        from_number = next((w[1] for w in steps if w[1]), None)
        to_number = next((w[2] for w in steps if w[2]), None)
        batch.append((call_id, from_number, to_number, any(w[3] for w in steps), [w[5] for w in steps]))
    return batch


def _write(rows: callrows.CallRowStore, writes: list[Queued]) -> bool:
    """Write the calls in one transaction (one by one if that fails). False if the
    database is down: `writes` then holds what is still to be written."""
    batch = _batch(writes)
    try:
        write_batch(rows, "twilio", batch)
        return True
    except DatabaseUnavailable as exc:
        log.warning("Twilio call log not written yet (%s); trying again", exc)
        return False
    except Exception as exc:  # noqa: BLE001 - one bad call must not keep the others from the log
        log.error("Twilio call-log batch failed; writing its calls one by one: %s", exc)
    done: set[str] = set()
    for one in batch:
        try:
            write_batch(rows, "twilio", [one])
        except DatabaseUnavailable:
            writes[:] = [w for w in writes if w[0] not in done]
            return False
        except Exception:  # noqa: BLE001 - as the same step would have failed in line
            log.exception("call %s: call-log writes lost", one[0])
        done.add(one[0])
    return True


class LogQueueService:
    """`hotline serve`'s part: the writer process, started again if it dies."""

    name = "Twilio call-log writer"

    def __init__(self, url: str, path: Path):
        self.url, self.path = url, path
        self._stopping = threading.Event()
        self._process: Any = None
        self._thread = threading.Thread(target=self._watch, name="twilio-log", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._process = context.Process(
            target=serve_queue, args=(self.url, str(self.path)), name="twilio call-log writer", daemon=True
        )
        self._process.start()

    def _watch(self) -> None:
        while True:
            self._process.join()
            if self._stopping.wait(RETRY_SECONDS):
                return
            if self._process.exitcode == 0:  # signalled itself (systemd, Ctrl+C): stopped, not died
                log.warning("the Twilio call-log writer stopped; webhooks write the call log themselves")
                return
            log.error(
                "the Twilio call-log writer ended (exit code %s); starting it again", self._process.exitcode
            )
            self._spawn()

    def stop(self) -> None:
        """Let the writer write what it holds (up to STOP_SECONDS), then end it."""
        self._stopping.set()
        if not stop_writer(self.path):
            # Not listening yet (a stop during `serve`'s start): nothing was sent to it.
            self._process.terminate()
        # The watching thread alone waits for the process (two threads' waits race for
        # its exit status): it returns once the process has ended.
        self._thread.join(STOP_SECONDS)
        if self._thread.is_alive():
            self._process.kill()
            self._thread.join(5)


def stop_writer(path: Path) -> bool:
    """Ask the writer on `path` to write what it holds and end; False if none listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
            sock.sendall(_frame(_STOP, b""))
        except OSError:
            return False
    return True


def usable(settings: Settings) -> bool:
    """True if webhooks may queue: Twilio configured, no live speech, a socket path that fits."""
    twilio = bool(settings.twilio_auth_token or settings.twilio_insecure)
    return twilio and not settings.live_speech and len(os.fsencode(socket_path(settings))) <= MAX_SOCKET_PATH


def make_service(settings: Settings, db: Database) -> LogQueueService | None:
    """The `twilio-log` entry of `hotline.services`."""
    path = socket_path(settings)
    if not usable(settings):
        if len(os.fsencode(path)) > MAX_SOCKET_PATH and (
            settings.twilio_auth_token or settings.twilio_insecure
        ):
            # Webhooks still work, writing the call log themselves (slower under load).
            sys.stderr.write(
                f"hotline: warning: no Twilio call-log writer: its socket path {path} is longer than "
                f"{MAX_SOCKET_PATH} bytes; use a shorter HOTLINE_DATA_DIR\n"
            )
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return LogQueueService(db.url, path)
