"""AudioSocket (Asterisk's `app_audiosocket`, since 18): a call's audio over TCP, to a live recognizer.

The protocol (res/res_audiosocket.c; docs/audiosocket.md): every message is a kind
byte, a 16-bit big-endian payload length, and the payload.

    0x00 hang-up   (server → Asterisk: hang up; Asterisk itself just closes the socket)
    0x01 UUID      (Asterisk → server, first message: the 16 bytes of the dialplan's UUID)
    0x03 DTMF      (Asterisk → server: one ASCII digit)
    0x10 audio     (both ways: signed linear 16-bit, 8 kHz, mono; Asterisk sends 20 ms = 320 bytes)
    0x11…0x18      audio at 12…192 kHz (the channel-driver interface only)
    0xff error     (Asterisk → server: an error on Asterisk's side)

The codec (`encode`, `FrameReader`) is pure; `AudioSocketServer` accepts Asterisk's
connections and hands each call's audio, by the UUID the dialplan also passes to the
FastAGI session, to the `LiveCall` registered for it (ivr.livecall). A stream that
breaks (a socket error, an error frame, garbage) only ends the live decoding: the call
itself goes on in the FastAGI session, on the keypad.

Errors: AudioSocketProtocolError (an AgiError sibling, a HotlineError) for bytes that
are not AudioSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import struct
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hotline.errors import HotlineError
from ivr.asterisk.fastagi import new_event_loop

log = logging.getLogger(__name__)

HEADER = struct.Struct("!BH")
UUID_TIMEOUT = 5.0  # seconds Asterisk has to send the UUID after connecting
IDLE_TIMEOUT = 10.0  # Asterisk sends audio every 20 ms; this much silence is a dead peer
BATCH_BYTES = 3200  # 0.2 s of 8 kHz audio decoded at a time


class AudioSocketProtocolError(HotlineError):
    """Bytes that are not the AudioSocket protocol."""


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    AUDIO_SLIN12 = 0x11
    AUDIO_SLIN16 = 0x12
    AUDIO_SLIN24 = 0x13
    AUDIO_SLIN32 = 0x14
    AUDIO_SLIN44 = 0x15
    AUDIO_SLIN48 = 0x16
    AUDIO_SLIN96 = 0x17
    AUDIO_SLIN192 = 0x18
    ERROR = 0xFF


DTMF_KEYS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True)
class Frame:
    kind: Kind
    payload: bytes = b""

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self.payload)

    @property
    def digit(self) -> str:
        return self.payload.decode("ascii")


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    """One message on the wire."""
    if len(payload) > 0xFFFF:
        raise ValueError("an AudioSocket payload is at most 65535 bytes")
    return HEADER.pack(kind, len(payload)) + payload


def uuid_frame(call: uuid.UUID | str) -> bytes:
    """The first message Asterisk sends: the call's UUID in 16 bytes."""
    value = call if isinstance(call, uuid.UUID) else uuid.UUID(call)
    return encode(Kind.UUID, value.bytes)


def _check(frame: Frame) -> Frame:
    if frame.kind == Kind.UUID and len(frame.payload) != 16:
        raise AudioSocketProtocolError(f"a UUID message of {len(frame.payload)} bytes (16 expected)")
    if frame.kind == Kind.DTMF and (len(frame.payload) != 1 or chr(frame.payload[0]) not in DTMF_KEYS):
        raise AudioSocketProtocolError(f"a DTMF message that is not one key: {frame.payload[:8]!r}")
    if frame.kind == Kind.AUDIO and len(frame.payload) % 2:
        raise AudioSocketProtocolError("an audio message with half a sample")
    return frame


class FrameReader:
    """Bytes in, frames out; a partial frame waits for the rest."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= HEADER.size:
            raw_kind, length = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + length:
                break
            try:
                kind = Kind(raw_kind)
            except ValueError:
                raise AudioSocketProtocolError(f"unknown message kind 0x{raw_kind:02x}") from None
            payload = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            frames.append(_check(Frame(kind, payload)))
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next message, None when Asterisk closed the socket between messages."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise AudioSocketProtocolError("the socket closed inside a message header") from None
        return None
    raw_kind, length = HEADER.unpack(header)
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise AudioSocketProtocolError("the socket closed inside a message") from None
    try:
        kind = Kind(raw_kind)
    except ValueError:
        raise AudioSocketProtocolError(f"unknown message kind 0x{raw_kind:02x}") from None
    return _check(Frame(kind, payload))


# --- the server ------------------------------------------------------------------


class StreamSink:
    """What a call's audio goes to (ivr.livecall.LiveCall); called from worker threads."""

    def audio(self, pcm: bytes) -> None: ...
    def dtmf(self, key: str) -> None: ...
    def close(self, complete: bool, why: str = "") -> None: ...


SinkFor = Callable[[uuid.UUID], StreamSink | None]


class AudioSocketServer:
    """Accepts Asterisk's AudioSocket connections; each call's audio goes to its sink."""

    def __init__(self, sink_for: SinkFor, host: str = "127.0.0.1", port: int = 0):
        self.sink_for = sink_for
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self.connections = 0
        self._open: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self, grace: float = 60.0) -> None:
        """Stop listening; streams still open get `grace` seconds to end (their words are saved)."""
        if self._server is not None:
            self._server.close()
        if self._open:
            await asyncio.wait(self._open, timeout=grace)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._open.add(task)
        try:
            await handle_stream(reader, self.sink_for)
        finally:
            if task is not None:
                self._open.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def handle_stream(
    reader: asyncio.StreamReader,
    sink_for: SinkFor,
    decode: Callable[[Callable[..., None], bytes], Awaitable[None]] | None = None,
) -> str:
    """One AudioSocket connection to its end; how it ended ('hangup', 'closed', or what broke)."""
    run = decode or (lambda fn, data: asyncio.to_thread(fn, data))
    try:
        first = await asyncio.wait_for(read_frame(reader), UUID_TIMEOUT)
    except (TimeoutError, AudioSocketProtocolError, ConnectionError, OSError) as exc:
        log.warning("AudioSocket connection without a UUID: %s", exc or type(exc).__name__)
        return "no uuid"
    if first is None or first.kind != Kind.UUID:
        log.warning("AudioSocket connection that did not start with its UUID")
        return "no uuid"
    call = first.uuid
    sink = sink_for(call)
    if sink is None:
        log.info("AudioSocket stream %s: no call is waiting for it; audio ignored", call)
    batch = bytearray()
    how, complete = "closed", True
    try:
        while True:
            frame = await asyncio.wait_for(read_frame(reader), IDLE_TIMEOUT)
            if frame is None:
                break
            if frame.kind == Kind.HANGUP:
                how = "hangup"
                break
            if frame.kind == Kind.ERROR:
                how, complete = f"Asterisk reported an error ({frame.payload[:8].hex()})", False
                break
            if sink is None:
                continue
            if frame.kind == Kind.AUDIO:
                batch += frame.payload
                if len(batch) >= BATCH_BYTES:
                    data, batch = bytes(batch), bytearray()
                    await run(sink.audio, data)
            elif frame.kind == Kind.DTMF:
                sink.dtmf(frame.digit)
            # audio at other rates only comes from the channel driver, not the dialplan app
    except TimeoutError:
        how, complete = "no audio from Asterisk", False
    except AudioSocketProtocolError as exc:
        how, complete = f"protocol error: {exc}", False
    except (ConnectionError, OSError) as exc:
        how, complete = f"socket error: {exc}", False
    if sink is not None:
        if batch:
            with contextlib.suppress(Exception):
                await run(sink.audio, bytes(batch))
        await asyncio.to_thread(sink.close, complete, how)
    log.info("AudioSocket stream %s ended: %s", call, how)
    return how


class AudioSocketService:
    """The AudioSocket server in a thread of its own, for `hotline serve`."""

    def __init__(self, sink_for: SinkFor, host: str, port: int):
        self.name = f"AudioSocket on {host}:{port}"  # `hotline serve` says it started
        self.server = AudioSocketServer(sink_for, host, port)
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._run, name="audiosocket", daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.server.start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        log.info("AudioSocket listening on %s:%s", self.server.host, self.server.port)

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


def make_service(settings: Any, db: Any) -> AudioSocketService | None:
    """The AudioSocket listener of `hotline serve`, when HOTLINE_LIVE_SPEECH is on (and Vosk is used)."""
    if not settings.live_speech or settings.asr_engine != "vosk":
        return None
    from hotline.transcription.live import live_model
    from ivr.livecall import ASTERISK_STREAMS, LiveCall

    try:
        model, language = live_model(settings.vosk_model)
    except HotlineError as exc:  # no model: calls go on without live speech
        log.error("AudioSocket not started: %s", exc)
        return None

    def sink_for(call: uuid.UUID) -> StreamSink:
        live = LiveCall(
            db,
            backend="asterisk",
            call_id=str(call),  # the FastAGI session puts the call's own id here
            stream_id=str(call),
            model=model,
            language=language,
            model_name=settings.vosk_model.name,
        )
        ASTERISK_STREAMS.add(live)
        return _Forget(live, ASTERISK_STREAMS)

    return AudioSocketService(sink_for, settings.audiosocket_host, settings.audiosocket_port)


class _Forget(StreamSink):
    """A registered LiveCall that leaves the registry when its stream ends."""

    def __init__(self, live: Any, registry: Any):
        self.live, self.registry = live, registry

    def audio(self, pcm: bytes) -> None:
        self.live.audio(pcm)

    def dtmf(self, key: str) -> None:
        self.live.dtmf(key)

    def close(self, complete: bool, why: str = "") -> None:
        self.live.close(complete, why)
        self.registry.remove(self.live.stream_id)
