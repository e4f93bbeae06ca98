"""The FastAGI server: one asyncio coroutine per call, speaking AGI to Asterisk.

`AgiChannel` turns AGI commands into awaitable methods and every way a call can end
(a hangup result, `HANGUP`, `511`, a closed or broken socket) into `ChannelGone`.
`FastAgiServer` accepts Asterisk's connections and hands each channel to a handler;
`AgiService` runs the server in a thread of its own for `hotline serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

from ivr.asterisk import agi
from ivr.asterisk.agi import AgiEnvironment, AgiProtocolError, ChannelGone, RecordOutcome, Reply

log = logging.getLogger(__name__)

ENVIRONMENT_TIMEOUT = 10.0  # seconds Asterisk has to send the agi_* block
MAX_LINE = 64 * 1024


class AgiChannel:
    """One FastAGI session: commands out, answers in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer
        self._replies = agi.ReplyReader()
        self.environment: AgiEnvironment | None = None

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
            raise AgiProtocolError("a line longer than 64 KiB") from exc
        if not raw.endswith(b"\n"):
            raise ChannelGone("socket closed by Asterisk")
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    async def read_environment(self, timeout: float = ENVIRONMENT_TIMEOUT) -> AgiEnvironment:
        """Read the agi_* block that starts the session."""

        async def read() -> AgiEnvironment:
            lines: list[str] = []
            while line := await self._line():
                lines.append(line)
                if len(lines) > 200:
                    raise AgiProtocolError("the AGI environment never ends")
            return agi.parse_environment(lines)

        try:
            self.environment = await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            raise AgiProtocolError("no AGI environment within the time limit") from None
        return self.environment

    async def execute(self, name: str, *args: str | int) -> Reply:
        """Send one command and wait for its answer (after a hangup Asterisk answers 511)."""
        try:
            self._writer.write(agi.command(name, *args).encode())
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ChannelGone(f"socket error: {exc}") from exc
        while True:
            reply = self._replies.feed(await self._line())
            if reply is not None:
                return reply

    async def answer(self) -> None:
        if (await self.execute("ANSWER")).result == "-1":
            raise ChannelGone("ANSWER failed: the channel is gone")

    async def stream_file(self, path: str, escape_digits: str = agi.ESCAPE_DIGITS) -> str | None:
        """Play a prompt; the key that interrupted it, if any."""
        return agi.digit_of(await self.execute("STREAM FILE", path, escape_digits))

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return agi.digit_of(await self.execute("WAIT FOR DIGIT", timeout_ms))

    async def get_data(self, path: str, timeout_ms: int, max_digits: int) -> str:
        """Play a prompt and collect digits until `#`, max_digits or the timeout."""
        return agi.digits_of(await self.execute("GET DATA", path, timeout_ms, max_digits))

    async def record_file(
        self, path: str, *, max_ms: int, silence_s: int, escape_digits: str = "#", beep: bool = True
    ) -> RecordOutcome:
        """Record `path`.wav on Asterisk's side; how the recording ended."""
        args: list[str | int] = [path, "wav", escape_digits, max_ms, 0]
        if beep:
            args.append("BEEP")
        args.append(f"s={silence_s}")
        return agi.record_outcome(await self.execute("RECORD FILE", *args))

    async def get_variable(self, name: str) -> str | None:
        return agi.variable_of(await self.execute("GET VARIABLE", name))

    async def exec(self, application: str, options: str) -> Reply:
        return await self.execute("EXEC", application, options)

    async def hangup(self) -> None:
        """Hang up, unless the caller already did."""
        with contextlib.suppress(ChannelGone, AgiProtocolError):
            await self.execute("HANGUP")

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


Handler = Callable[[AgiChannel], Awaitable[None]]


class FastAgiServer:
    """Accepts Asterisk's FastAGI connections; each one runs `handler` in its own task."""

    def __init__(self, handler: Handler, host: str, port: int):
        self._handler = handler
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self.peak = 0  # most calls served at once
        self.served = 0

    async def start(self) -> int:
        """Listen; the port actually bound (port 0 picks one)."""
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, limit=MAX_LINE, backlog=2048
        )
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active(self) -> int:
        return len(self._sessions)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self._idle.clear()
        self.peak = max(self.peak, len(self._sessions))
        channel = AgiChannel(reader, writer)
        try:
            await channel.read_environment()
            await self._handler(channel)
        except AgiProtocolError as exc:
            log.warning("FastAGI: %s; closing the connection", exc)
        except ChannelGone:
            pass
        except Exception:
            log.exception("FastAGI session failed")
        finally:
            await channel.close()
            self._sessions.discard(task)
            self.served += 1
            if not self._sessions:
                self._idle.set()

    async def stop(self, grace: float = 0.0) -> None:
        """Stop listening; give the calls in progress `grace` seconds, then end them."""
        if self._server is not None:
            self._server.close()
        if self._sessions and grace > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        for task in list(self._sessions):
            task.cancel()
        if self._sessions:
            await asyncio.wait(list(self._sessions), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()


class AgiService:
    """The FastAGI server in a thread with its own event loop (a `hotline serve` service)."""

    name = "FastAGI"

    def __init__(self, handler: Handler, host: str, port: int):
        self._server = FastAgiServer(handler, host, port)
        self._host = host
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fastagi", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port: int | None = None

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
        self._loop.run_forever()
        self._loop.run_until_complete(self._server.stop(grace=5))
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
