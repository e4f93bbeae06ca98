"""A fake Asterisk AudioSocket peer: what `AudioSocket(uuid,host:port)` sends, over real TCP.

As res_audiosocket.c does: the UUID message first, then the caller's audio in 20 ms
messages (320 bytes of 8 kHz slin), a DTMF message per key, and at the end of the call
the socket is simply closed (Asterisk sends no hang-up message of its own). `end`
picks another ending for tests: "hangup" (a 0x00 message), "error" (a 0xff message),
"cut" (the socket dropped inside a message).
"""

from __future__ import annotations

import asyncio
import uuid

from ivr.asterisk.audiosocket import Kind, encode, uuid_frame

FRAME_BYTES = 320  # 20 ms of 8 kHz signed linear


async def stream_call(
    host: str,
    port: int,
    call: uuid.UUID | str,
    pcm: bytes,
    *,
    dtmf: dict[int, str] | None = None,
    end: str = "close",
    realtime: bool = False,
) -> None:
    """Send one call's audio as Asterisk would; `dtmf` maps a frame index to the key pressed then."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(uuid_frame(call))
        for index, start in enumerate(range(0, len(pcm), FRAME_BYTES)):
            if dtmf and index in dtmf:
                writer.write(encode(Kind.DTMF, dtmf[index].encode("ascii")))
            writer.write(encode(Kind.AUDIO, pcm[start : start + FRAME_BYTES]))
            if realtime:
                await asyncio.sleep(0.02)
            if index % 50 == 0:
                await writer.drain()
        if end == "hangup":
            writer.write(encode(Kind.HANGUP))
        elif end == "error":
            writer.write(encode(Kind.ERROR, b"\x01"))
        elif end == "cut":
            writer.write(encode(Kind.AUDIO, bytes(FRAME_BYTES))[:100])
        await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()
