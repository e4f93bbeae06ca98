"""The FastAGI server: one asyncio coroutine per call, speaking AGI to Asterisk.

`AgiChannel` turns AGI commands into awaitable methods and every way a call can end
(a hangup result, `HANGUP`, `511`, a closed or broken socket) into `ChannelGone`; an
answer that does not come in time into `AnswerTimeout`. `FastAgiServer` accepts
Asterisk's connections and hands each channel to a handler; `AgiService` runs the
server in a thread of its own for `hotline serve`.

Anyone on the PBX's network can reach the port, so the server bounds what a peer can
take: a connection that has not sent its environment within ENVIRONMENT_TIMEOUT is
closed, at most `max_pending` such connections are kept (the oldest is dropped for a
new one: Asterisk sends its environment at once, a flood of idle sockets does not),
and at most `max_sessions` calls run at once. A call over the cap, and every call
still going when a restart's drain time is over, is handed back to the dialplan with
AGISTATUS=FAILURE so that its fallback takes the caller (docs/asterisk.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import uvloop

from hotline import health
from ivr.asterisk import agi
from ivr.asterisk.agi import (
    AgiEnvironment,
    AgiError,
    AgiProtocolError,
    AnswerTimeout,
    ChannelGone,
    Playback,
    RecordOutcome,
    Reply,
)

log = logging.getLogger(__name__)

ENVIRONMENT_TIMEOUT = 5.0  # seconds Asterisk has to send the agi_* block (it sends it at once)
MAX_LINE = agi.MAX_LINE
DEFAULT_MAX_SESSIONS = 500
DEFAULT_ANSWER_TIMEOUT = 60.0
MAX_PENDING = 1024  # connections still to send their environment (at least; see FastAgiServer)
NOTICE_SECONDS = 10.0  # after the drain: time for each call to reach its next command
CLOSE_WAIT = 2.0  # after FAILURE: time for Asterisk to close its side
DROP_LOG_EVERY = 60.0  # connections dropped before a call (idle, not AGI): one log line a minute
ANSWER_HOLD = 0.25  # seconds a burst of new calls may hold an answer (they ring meanwhile)
BACKLOG = 4096  # connections the kernel queues for accept (a burst of calls arrives at once)
TIMER_RESOLUTION = 0.001  # uvloop's clock and timers count whole milliseconds


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop of every server on Asterisk's side (FastAGI, AudioSocket): uvloop's,
    whose sockets and callbacks are C. Under a burst of calls the loop's own work per AGI
    command is a large part of the wait between two prompts (docs/performance.md)."""
    return uvloop.new_event_loop()


class CallCounts(Protocol):
    """Calls in progress in every process sharing one FastAGI port (`ivr.asterisk.processes`)."""

    def total(self) -> int:
        """Calls in progress in all the processes."""

    def set(self, calls: int) -> None:
        """Record this process's calls in progress."""


class Stopping(AgiError):
    """The server is stopping: the call must be handed back to the dialplan now."""


class BadEnvironment(AgiProtocolError):
    """A complete AGI environment with a value the hotline refuses (a bad agi_uniqueid)."""


class AnswerGate:
    """Holds ANSWER while a burst of new calls is being set up, then lets them all answer.

    Under a burst the event loop sets up new calls (environment, call log, the caller's
    number) between the answers of calls already answered, and every one of those is
    silence for a caller who has picked up. Held, the new calls go on ringing while the
    burst's set-ups run; ANSWER goes once a pass of the loop brings no new call, or after
    ANSWER_HOLD. A call alone waits one pass of the loop. Connections that never send
    an environment never reach the gate, so they cannot hold anyone.
    """

    def __init__(self, hold: float = ANSWER_HOLD):
        self.hold = hold
        self._waiting: list[asyncio.Future[None]] = []
        self._arrived = False
        self._since = 0.0
        self._check: asyncio.Handle | None = None

    async def turn(self) -> None:
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiting.append(turn)
        self._arrived = True
        if self._check is None:
            self._since = loop.time()
            self._check = loop.call_soon(self._release)
        await turn

    def _release(self) -> None:
        loop = asyncio.get_running_loop()
        if self._arrived and loop.time() - self._since < self.hold:
            self._arrived = False  # look again after one more pass of the loop
            self._check = loop.call_soon(self._release)
            return
        waiting, self._waiting, self._check = self._waiting, [], None
        for turn in waiting:
            if not turn.done():
                turn.set_result(None)


class AgiChannel:
    """One FastAGI session: commands out, answers in."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
        answer_gate: AnswerGate | None = None,
    ):
        self._reader = reader
        self._answer_gate = answer_gate
        self._writer = writer
        self._replies = agi.ReplyReader()
        self.answer_timeout = answer_timeout
        # The answer's deadline (None: no answer awaited) and the one timer that watches it.
        self._deadline: float | None = None
        self._timeout = 0.0
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0  # when it fires (uvloop's timer for less than 1 ms is a plain Handle)
        self.environment: AgiEnvironment | None = None
        self.stopping = False  # set by the server: no new command may start
        self.waiting = False  # a command was sent and its answer has not come yet
        self.handed_back = False  # FAILURE was sent: the dialplan's fallback has the call

    @property
    def hung_up(self) -> bool:
        """Asterisk said `HANGUP` (the caller is gone; answers may still follow)."""
        return self._replies.hung_up

    async def _line(self) -> str:
        try:
            raw = await self._reader.readline()
        except (ConnectionError, OSError) as exc:
            raise ChannelGone(f"socket error: {exc}") from exc
        except (asyncio.LimitOverrunError, ValueError) as exc:
            raise AgiProtocolError(f"a line longer than {MAX_LINE} bytes") from exc
        if not raw.endswith(b"\n"):
            raise ChannelGone("socket closed by Asterisk")
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    async def read_environment(self, timeout: float = ENVIRONMENT_TIMEOUT) -> AgiEnvironment:
        """Read the agi_* block that starts the session (bounded in time, lines and bytes)."""

        async def read() -> list[str]:
            lines: list[str] = []
            size = 0
            while line := await self._line():
                lines.append(line)
                size += len(line)
                if len(lines) > agi.MAX_ENV_LINES or size > agi.MAX_ENV_BYTES:
                    raise AgiProtocolError("the AGI environment never ends")
            return lines

        try:
            async with asyncio.timeout(timeout):  # no task per call, unlike wait_for
                lines = await read()
        except TimeoutError:
            raise AgiProtocolError("no AGI environment within the time limit") from None
        try:
            self.environment = agi.parse_environment(lines)
        except AgiProtocolError as exc:
            if any(line.startswith("agi_uniqueid:") for line in lines) and "agi_uniqueid" in str(exc):
                raise BadEnvironment(str(exc)) from None
            raise
        return self.environment

    async def execute(self, name: str, *args: str | int, wait: float = 0.0, force: bool = False) -> Reply:
        """Send one command and wait for its answer (after a hangup Asterisk answers 511).

        The answer must come within the answer timeout plus `wait` (how long the command
        itself may take: a recording's length, a transfer's ringing and talk). While the
        server stops, only a `force`d command (the restart notice) may start.
        """
        if self.stopping and not force:
            raise Stopping("the FastAGI server is stopping")
        if self._writer.is_closing():  # reset by Asterisk (uvloop refuses a write on it)
            raise ChannelGone("socket closed by Asterisk")
        try:
            self._writer.write(agi.command_line(name, args))
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ChannelGone(f"socket error: {exc}") from exc
        self._watch(self.answer_timeout + wait)
        self.waiting = True
        try:
            while True:
                reply = self._replies.feed(await self._line())
                if reply is not None:
                    break
        except asyncio.CancelledError:
            self._deadline = None  # no read waits now; the command is still running on
            raise  # Asterisk's side: `waiting` stays set
        except BaseException:
            self.waiting, self._deadline = False, None
            raise
        self.waiting, self._deadline = False, None
        return reply

    def _watch(self, timeout: float) -> None:
        """Arm the answer's deadline. One timer per channel, moved only when the deadline
        comes earlier than it (a timer per command is a heap push and pop on every answer)."""
        loop = asyncio.get_running_loop()
        self._deadline, self._timeout = loop.time() + timeout, timeout
        timer = self._timer
        if timer is not None and self._timer_at <= self._deadline:
            return  # it fires first and looks again
        if timer is not None:
            timer.cancel()
        self._timer, self._timer_at = loop.call_at(self._deadline, self._overdue), self._deadline

    def _overdue(self) -> None:
        self._timer = None
        if self._deadline is None:
            return  # answered: the next command arms it again
        loop = asyncio.get_running_loop()
        if self._deadline - loop.time() >= TIMER_RESOLUTION:
            self._timer, self._timer_at = loop.call_at(self._deadline, self._overdue), self._deadline
            return
        # The read waiting for the answer raises it (and every later read on this socket).
        self._reader.set_exception(AnswerTimeout(f"no answer from Asterisk within {self._timeout:.0f} s"))

    async def answer(self) -> None:
        if self._answer_gate is not None:
            await self._answer_gate.turn()
        if (await self.execute("ANSWER")).result == "-1":
            raise ChannelGone("ANSWER failed: the channel is gone")

    async def stream_file(self, path: str, escape_digits: str = agi.ESCAPE_DIGITS) -> Playback:
        """Play a prompt: the key that interrupted it, or a failure (see `alive`)."""
        return agi.playback_of(await self.execute("STREAM FILE", path, escape_digits))

    async def alive(self) -> bool:
        """Is the caller still there? (A dead channel answers `511`, a live one its state.)"""
        if self.hung_up:
            return False
        try:
            return agi.channel_alive(await self.execute("CHANNEL STATUS"))
        except ChannelGone:
            return False

    async def hangup_follows(self, timeout: float = 1.0) -> bool:
        """After an answer: does Asterisk announce the hangup (`HANGUP`) within `timeout` s?"""
        if self.hung_up:
            return True
        try:
            async with asyncio.timeout(timeout):
                line = await self._line()
        except TimeoutError:
            return False
        except ChannelGone:
            return True
        if line == agi.HANGUP_LINE:
            self._replies.hung_up = True
            return True
        raise AgiProtocolError(f"an answer nobody asked for: {agi.clip(line, 80)!r}")

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return agi.digit_of(await self.execute("WAIT FOR DIGIT", timeout_ms, wait=timeout_ms / 1000))

    async def get_data(self, path: str, timeout_ms: int, max_digits: int) -> str:
        """Play a prompt and collect digits until `#`, max_digits or the timeout."""
        return agi.digits_of(
            await self.execute("GET DATA", path, timeout_ms, max_digits, wait=timeout_ms * max_digits / 1000)
        )

    async def record_file(
        self, path: str, *, max_ms: int, silence_s: int, escape_digits: str = "#", beep: bool = True
    ) -> RecordOutcome:
        """Record `path`.wav on Asterisk's side; how the recording ended."""
        args: list[str | int] = [path, "wav", escape_digits, max_ms, 0]
        if beep:
            args.append("BEEP")
        args.append(f"s={silence_s}")
        return agi.record_outcome(await self.execute("RECORD FILE", *args, wait=max_ms / 1000 + silence_s))

    async def get_variable(self, name: str) -> str | None:
        return agi.variable_of(await self.execute("GET VARIABLE", name))

    async def exec(self, application: str, options: str, wait: float = 0.0) -> Reply:
        return await self.execute("EXEC", application, options, wait=wait)

    async def hangup(self) -> None:
        """Hang up, unless the caller already did (also while the server stops: the call is over)."""
        with contextlib.suppress(ChannelGone, AgiProtocolError, AnswerTimeout):
            await self.execute("HANGUP", force=True)

    async def hand_back(self, *commands: str) -> None:
        """Send `commands` (lines whose answers are not awaited), then FAILURE: Asterisk ends
        the AGI with AGISTATUS=FAILURE and the dialplan's fallback takes the call. Then read
        (and drop) what Asterisk still sends until it closes, for at most CLOSE_WAIT s."""
        self.handed_back = True
        if self._writer.is_closing():
            return
        try:
            self._writer.write(("".join(commands) + agi.FAILURE_LINE).encode())
            await asyncio.wait_for(self._writer.drain(), CLOSE_WAIT)
        except (ConnectionError, OSError, TimeoutError):
            return
        closed = (ConnectionError, OSError, TimeoutError, ValueError, asyncio.LimitOverrunError)
        with contextlib.suppress(*closed):
            # Asterisk answers the commands still queued, then FAILURE with `HANGUP`, and
            # closes (res_agi.c run_agi); closing first could reset the connection under them.
            async with asyncio.timeout(CLOSE_WAIT):
                while await self._reader.readline():
                    pass

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once (an idle socket pushed out by a new one)."""
        self._writer.transport.abort()


Handler = Callable[[AgiChannel], Awaitable[None]]
Refused = Callable[[AgiChannel, str], Awaitable[None]]


class FastAgiServer:
    """Accepts Asterisk's FastAGI connections; each one runs `handler` in its own task.

    `handler` may have an async `refused(channel, why)` method: it is told of every call
    handed back to the dialplan without running (over the cap, a bad environment).
    """

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
        max_pending: int | None = None,
        environment_timeout: float = ENVIRONMENT_TIMEOUT,
        notice_seconds: float = NOTICE_SECONDS,
        listener: socket.socket | None = None,
        counts: CallCounts | None = None,
    ):
        """`listener`: a listening socket to accept on instead of binding host:port (one
        shared by several processes, `ivr.asterisk.processes`); `counts`: the calls of
        every such process, so that `max_sessions` caps them all together."""
        self._handler = handler
        self._listener = listener
        self._counts = counts
        self._refused: Refused | None = getattr(handler, "refused", None)
        self._host, self._port = host, port
        self.max_sessions = max_sessions
        self.answer_timeout = answer_timeout
        # A burst of real calls is also a crowd of connections whose environment is not
        # read yet (it is in their socket, the loop has not got to them): never fewer than
        # twice the calls allowed, or a burst of 2,000 calls lost half of them.
        self.max_pending = max_pending if max_pending is not None else max(MAX_PENDING, 2 * max_sessions)
        self.environment_timeout = environment_timeout
        self.notice_seconds = notice_seconds
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()  # every connection's task
        self._pending: dict[AgiChannel, None] = {}  # waiting for their environment, oldest first
        self._calls: dict[asyncio.Task[None], AgiChannel] = {}
        self._idle = asyncio.Event()
        self._answer_gate = AnswerGate()
        self.peak = 0  # most calls served at once
        self.served = 0  # calls run to their end
        self.refused = 0  # calls handed back over the cap
        self.dropped = 0  # connections closed before a call started (idle, not AGI)
        self._drop_log_at = 0.0
        self._drops_unlogged = 0

    async def start(self) -> int:
        """Listen; the port actually bound (port 0 picks one)."""
        if self._listener is not None:
            self._server = await asyncio.start_server(
                self._accept, sock=self._listener, limit=MAX_LINE, backlog=BACKLOG
            )
        else:
            self._server = await asyncio.start_server(
                self._accept, self._host, self._port, limit=MAX_LINE, backlog=BACKLOG
            )
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active(self) -> int:
        """Connections open now (calls and connections still to send their environment)."""
        return len(self._sessions)

    @property
    def calls(self) -> int:
        return len(self._calls)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self._idle.clear()
        channel = AgiChannel(reader, writer, self.answer_timeout, self._answer_gate)
        try:
            try:
                await self._session(task, channel)
            except Exception:
                log.exception("FastAGI session failed")
            finally:
                self._pending.pop(channel, None)
                if self._calls.pop(task, None) is not None and self._counts is not None:
                    self._counts.set(len(self._calls))
                await channel.close()
        except asyncio.CancelledError:
            channel.abort()  # stop() ended it; a cancelled connection task would be logged as an error
        finally:
            self._sessions.discard(task)
            if not self._sessions:
                self._idle.set()

    async def _session(self, task: asyncio.Task[None], channel: AgiChannel) -> None:
        if len(self._pending) >= self.max_pending:
            oldest = next(iter(self._pending))
            self._pending.pop(oldest)
            oldest.abort()
            self._dropped(f"more than {self.max_pending} connections without an AGI environment")
        self._pending[channel] = None
        try:
            env = await channel.read_environment(self.environment_timeout)
        except BadEnvironment as exc:
            self._pending.pop(channel, None)
            log.warning("FastAGI: %s; the call goes back to the dialplan", exc)
            await channel.hand_back()
            return
        except AgiProtocolError as exc:
            self._dropped(str(exc))
            return
        except ChannelGone:
            return
        finally:
            self._pending.pop(channel, None)
        calls = len(self._calls) if self._counts is None else self._counts.total()
        if self._server is None or not self._server.is_serving() or calls >= self.max_sessions:
            self.refused += 1
            why = "stopping" if self._server is None or not self._server.is_serving() else "busy"
            log.warning(
                "FastAGI: call %s refused (%s: %d calls at once, HOTLINE_AGI_MAX_SESSIONS=%d); "
                "the dialplan's fallback takes it",
                env.uniqueid,
                why,
                calls,
                self.max_sessions,
            )
            await channel.hand_back()
            if self._refused is not None:
                await self._refused(channel, why)
            return
        self._calls[task] = channel
        if self._counts is not None:
            self._counts.set(len(self._calls))
        self.peak = max(self.peak, len(self._calls))
        try:
            await self._handler(channel)
        except (AgiProtocolError, AnswerTimeout) as exc:
            log.warning("FastAGI: %s; closing the connection", exc)
        except (ChannelGone, Stopping):
            pass
        finally:
            self.served += 1

    def _dropped(self, why: str) -> None:
        """Count a connection dropped before its call; log at most one line a minute (a flood
        of idle sockets must not become a flood of log lines)."""
        self.dropped += 1
        now = time.monotonic()
        if now < self._drop_log_at:
            self._drops_unlogged += 1
            return
        more = f" ({self._drops_unlogged} more dropped since the last report)" if self._drops_unlogged else ""
        log.warning("FastAGI: %s; closing the connection%s", why, more)
        self._drop_log_at, self._drops_unlogged = now + DROP_LOG_EVERY, 0

    async def stop(self, grace: float = 0.0) -> None:
        """Stop listening; give the calls in progress `grace` seconds, then hand them back.

        Each call still going is told to stop: at its next command it tells the caller
        the line is restarting and hands the call back to the dialplan. A call that
        has not reached one within NOTICE_SECONDS (a recording, a transfer) is cancelled:
        its handler sends the notice without waiting for the command in progress.
        """
        if self._server is not None:
            self._server.close()
        for channel in list(self._pending):
            channel.abort()
        if self._calls and grace > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        for channel in self._calls.values():
            channel.stopping = True
        if self._calls:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.notice_seconds)
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=CLOSE_WAIT + 5)
        if self._server is not None:
            await self._server.wait_closed()


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise this process's open-file limit towards `wanted` (within the hard limit); the limit now.

    Every FastAGI connection is a file descriptor, and systemd's default soft limit
    (1024) is what a flood of idle connections would reach first.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return int(soft)


BEAT_SECONDS = 1.0  # a FastAGI loop shows it runs this often (its heartbeat)
#: A loop that has not run for this long is stuck: far above its longest turn under a
#: burst of 2,000 calls (~0.3 s) or a full garbage collection (~0.1 s).
HANG_SECONDS = 30.0
WATCH_GAP = 5.0  # a watch that itself did not run for this long was stopped too (Ctrl+Z, a paused VM)
#: The `/healthz` problem (hotline.health) of a stuck in-thread FastAGI loop.
HANG_CHECK = "fastagi_stuck"


class AgiService:
    """The FastAGI server in a thread with its own event loop (a `hotline serve` service).

    The loop beats every BEAT_SECONDS and a watch thread looks. A loop that has not
    beaten for HANG_SECONDS is stuck (a call blocking it, a deadlock in an extension):
    no call is answered, and a thread cannot be killed, so `/healthz` says so (503) and
    the log says it once, until the loop runs again. The worker processes of
    `ivr.asterisk.processes` are killed and started again instead.
    """

    name = "FastAGI"
    processes = 1

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
        drain_seconds: float = 5.0,
        after_stop: Callable[[], None] | None = None,
        health_dir: Path | None = None,
    ):
        """`after_stop` runs once the calls in progress are drained (the store's close);
        `health_dir` is the data dir whose `/healthz` hears of a stuck loop."""
        self._after_stop = after_stop
        self._server = FastAgiServer(
            handler, host, port, max_sessions=max_sessions, answer_timeout=answer_timeout
        )
        self._host = host
        self._drain = drain_seconds
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fastagi", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port: int | None = None
        self._health_dir = health_dir
        self._beat = time.monotonic()
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="fastagi-watch", daemon=True)

    @property
    def server(self) -> FastAgiServer:
        return self._server

    @property
    def calls(self) -> int:
        return self._server.calls

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.port = self._loop.run_until_complete(self._server.start())
        except BaseException as exc:  # report a busy port to start()
            self._error = exc
            self._ready.set()
            return
        self.name = f"FastAGI on agi://{self._host}:{self.port}"
        self._ready.set()
        beating = self._loop.create_task(self._beating())
        self._loop.run_forever()
        beating.cancel()
        try:
            self._loop.run_until_complete(self._server.stop(grace=self._drain))
        finally:
            self._loop.close()
            if self._after_stop is not None:
                self._after_stop()

    def start(self) -> None:
        raise_fd_limit()
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        if self._health_dir is not None:
            health.clear(self._health_dir, HANG_CHECK)  # a stuck loop of an earlier run
            self._watcher.start()

    async def _beating(self) -> None:
        """The heartbeat while the loop runs (as each worker process's, `SharedCounts.beat`)."""
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(BEAT_SECONDS)

    def _watch(self) -> None:
        """Report the loop stuck, and running again (see the class)."""
        assert self._health_dir is not None
        checked, stuck = time.monotonic(), False
        while not self._stopping.wait(BEAT_SECONDS):
            now = time.monotonic()
            gap, checked = now - checked, now
            silent = now - self._beat
            if gap > WATCH_GAP:  # this process did not run either: beats to come
                continue
            if silent > HANG_SECONDS and not stuck:
                stuck = True
                log.error("FastAGI: the event loop has been stuck for %.0f s; no call is answered", silent)
                health.report(
                    self._health_dir,
                    HANG_CHECK,
                    f"FastAGI не отвечает на звонки: его цикл событий стоит больше {HANG_SECONDS:g} с; "
                    "перезапустите hotline serve",
                )
            elif stuck and silent <= BEAT_SECONDS * 2:
                stuck = False
                log.warning("FastAGI: the event loop runs again")
                health.clear(self._health_dir, HANG_CHECK)

    def stop(self) -> None:
        self._stopping.set()
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=self._drain + NOTICE_SECONDS + 15)
        if self._watcher.is_alive():
            self._watcher.join()
