"""A fake Asterisk for tests, demos and the benchmark, speaking FastAGI as Asterisk 22 does.

`FakeAsterisk` connects to a FastAGI server like Asterisk does and answers its commands
from a caller's script (keys, silence, recordings, dial results, hangups, a dropped
socket, 510/520 answers), writing real WAV files for RECORD FILE. The replies are the
ones observed on a real Asterisk: see docs/asterisk.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
import wave
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

# --- FastAGI: the caller's script -------------------------------------------------

SILENCE = "silence"  # the caller waits: WAIT FOR DIGIT and GET DATA time out
HANGUP = "hangup"  # the caller hangs up during the next command
DROP = "drop"  # the socket drops during the next command
REPLY_510 = "510"  # the next command is answered 510
REPLY_520 = "520"  # the next command is answered with a 520 usage block


@dataclass(frozen=True)
class Record:
    """The caller speaks for `seconds`, then: 'dtmf' (#), 'timeout' (limit/silence), 'hangup'."""

    seconds: float = 2.0
    end: str = "dtmf"
    then: Callable[[], None] | None = None  # run once the file is written (cut the database, say)


@dataclass(frozen=True)
class Dial:
    """What Dial to the duty engineer gives: ANSWER, NOANSWER, BUSY, CHANUNAVAIL."""

    status: str = "ANSWER"


Step = str | Record | Dial


@dataclass
class CallTrace:
    """What happened in one fake call: commands, the prompts heard, files recorded."""

    commands: list[str] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    recordings: list[Path] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)
    ended_by: str = ""  # "hotline" (HANGUP or closed socket) or the caller's "hangup"/"drop"


def write_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    """A real 16-bit mono WAV with a tone (Asterisk's `wav` format is this, at 8 kHz)."""
    frames = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(frames))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", s) for s in samples))


def split_args(line: str) -> list[str]:
    """Asterisk's own argument parsing (quotes, backslash escapes)."""
    args: list[str] = []
    current: list[str] = []
    quoted = escaped = have = False
    for c in line:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            escaped = have = True
        elif c == '"':
            quoted = not quoted
            have = True
        elif c in " \t" and not quoted:
            if have:
                args.append("".join(current))
            current, have = [], False
        else:
            current.append(c)
            have = True
    if have:
        args.append("".join(current))
    return args


COMMANDS = (
    "ANSWER",
    "STREAM FILE",
    "WAIT FOR DIGIT",
    "GET DATA",
    "RECORD FILE",
    "GET VARIABLE",
    "EXEC",
    "HANGUP",
)


class FakeAsterisk:
    """Plays one caller against a FastAGI server, as Asterisk would."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        uniqueid: str,
        callerid: str = "79001234567",
        script: Iterable[Step] = (),
        linkedid: str | None = None,
        script_path: str = "hotline",
        gate: Callable[[], Awaitable[None]] | None = None,
        shared_folder: bool = True,
        stream: str | None = None,  # the AudioSocket UUID the dialplan passes as the second argument
    ):
        self.host, self.port = host, port
        self.uniqueid = uniqueid
        self.callerid = callerid
        self.linkedid = linkedid
        self.script_path = script_path
        self.script: list[Step] = []
        for step in script:
            # "12#" is three key presses; "!1" a key pressed while a prompt plays.
            if isinstance(step, str) and step not in {SILENCE, HANGUP, DROP, REPLY_510, REPLY_520}:
                self.script.extend(("!" + c) if step.startswith("!") else c for c in step.lstrip("!"))
            else:
                self.script.append(step)
        self.trace = CallTrace()
        self.dead = False
        self.variables: dict[str, str] = {}
        self.shared_folder = shared_folder  # False: Asterisk writes on a disk the hotline cannot see
        self.gate = gate  # awaited before the first answer (hold many calls open at once)
        self.stream = stream

    def environment(self) -> bytes:
        lines = {
            "agi_network": "yes",
            "agi_network_script": self.script_path,
            "agi_request": f"agi://{self.host}:{self.port}/{self.script_path}",
            "agi_channel": f"PJSIP/trunk-{self.uniqueid.replace('.', '')}",
            "agi_language": "ru",
            "agi_type": "PJSIP",
            "agi_uniqueid": self.uniqueid,
            "agi_version": "22.1.0",
            "agi_callerid": self.callerid,
            "agi_calleridname": "unknown",
            "agi_callingpres": "0",
            "agi_dnid": "3435674530",
            "agi_rdnis": "unknown",
            "agi_context": "from-trunk",
            "agi_extension": "73435674530",
            "agi_priority": "2",
            "agi_enhanced": "0.0",
            "agi_accountcode": "",
            "agi_threadid": "140245",
        }
        if self.linkedid:
            lines["agi_arg_1"] = self.linkedid
        if self.stream:
            lines["agi_arg_1"] = self.linkedid or self.uniqueid
            lines["agi_arg_2"] = self.stream
        return ("".join(f"{k}: {v}\n" for k, v in lines.items()) + "\n").encode()

    def _next(self) -> Step | None:
        return self.script.pop(0) if self.script else None

    def _peek(self) -> Step | None:
        return self.script[0] if self.script else None

    async def run(self, timeout: float = 30.0) -> CallTrace:
        """Connect, play the script to its end, and return what happened."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            await asyncio.wait_for(self._converse(reader, writer), timeout)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        return self.trace

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.environment())
        await writer.drain()
        sent_at: float | None = None
        while True:
            raw = await reader.readline()
            if not raw:
                self.trace.ended_by = self.trace.ended_by or "hotline"
                return
            if sent_at is not None:
                self.trace.round_trips.append(time.perf_counter() - sent_at)
            line = raw.decode().rstrip("\n")
            if self.gate is not None:
                gate, self.gate = self.gate, None
                await gate()
            self.trace.commands.append(line)
            answer = self.answer(line)
            if answer is None:  # the socket drops
                self.trace.ended_by = "drop"
                writer.transport.abort()
                return
            writer.write(answer.encode())
            await writer.drain()
            sent_at = time.perf_counter()
            if line.startswith("HANGUP") and not self.dead:
                self.trace.ended_by = "hotline"
                return

    def answer(self, line: str) -> str | None:
        """Asterisk's answer to one command line (None: the socket drops)."""
        if self.dead and not line.startswith("GET VARIABLE"):  # GET VARIABLE works on a dead channel
            return "511 Command Not Permitted on a dead channel or intercept routine\n"
        step = self._peek()
        if step == DROP:
            return None
        if step == REPLY_510:
            self._next()
            return "510 Invalid or unknown command\n"
        if step == REPLY_520:
            self._next()
            return (
                "520-Invalid command syntax.  Proper usage follows:\n"
                " Usage: STREAM FILE <filename> <escape_digits> [<sample offset>]\n"
                "520 End of proper usage.\n"
            )
        name = next((c for c in COMMANDS if line.startswith(c)), None)
        if name is None:
            return "510 Invalid or unknown command\n"
        args = split_args(line[len(name) :])
        if step == HANGUP:
            return self._hang_up(name)
        return getattr(self, "_" + name.lower().replace(" ", "_"))(args)

    def _hang_up(self, name: str) -> str:
        self._next()
        self.dead = True
        self.trace.ended_by = "hangup"
        if name == "RECORD FILE":
            return "200 result=-1 (hangup) endpos=0\nHANGUP\n"
        if name == "ANSWER":
            return "HANGUP\n511 Command Not Permitted on a dead channel or intercept routine\n"
        # The extra HANGUP line comes before the answer (FIELD-NOTES: "at any time").
        return "HANGUP\n200 result=-1 endpos=0\n"

    def _answer(self, args: list[str]) -> str:
        return "200 result=0\n"

    def _stream_file(self, args: list[str]) -> str:
        self.trace.heard.append(args[0])
        step = self._peek()
        if isinstance(step, str) and step.startswith("!"):
            self._next()
            if args[1] and step[1] in args[1]:
                return f"200 result={ord(step[1])} endpos=4000\n"
            return "200 result=0 endpos=16000\n"  # no escape digits: the key is lost
        return "200 result=0 endpos=16000\n"

    def _key(self) -> str | None:
        step = self._peek()
        if isinstance(step, str) and len(step.lstrip("!")) == 1 and step not in {HANGUP, DROP}:
            self._next()
            return step.lstrip("!")
        if step == SILENCE:
            self._next()
        return None

    def _wait_for_digit(self, args: list[str]) -> str:
        if not self.script:
            return self._hang_up("WAIT FOR DIGIT")
        key = self._key()
        return f"200 result={ord(key) if key else 0}\n"

    def _get_data(self, args: list[str]) -> str:
        self.trace.heard.append(args[0])
        if not self.script:
            self.dead = True
            self.trace.ended_by = "hangup"
            return "HANGUP\n200 result=-1\n"
        max_digits = int(args[2]) if len(args) > 2 else 1024
        typed = ""
        while len(typed) < max_digits:
            step = self._peek()
            if step in {HANGUP, DROP, None}:
                break
            key = self._key()
            if key is None:
                return f"200 result={typed} (timeout)\n"
            if key == "#":
                return f"200 result={typed}\n"
            typed += key
        return f"200 result={typed}\n"

    def _record_file(self, args: list[str]) -> str:
        step = self._next()
        if not isinstance(step, Record):
            step = Record(seconds=0.0, end="timeout") if step in (SILENCE, None) else Record()
        path = Path(f"{args[0]}.{args[1]}")
        if self.shared_folder:
            write_wav(path, step.seconds)
            self.trace.recordings.append(path)
        if step.then is not None:
            step.then()
        endpos = int(step.seconds * 8000)
        if step.end == "hangup":
            self.dead = True
            self.trace.ended_by = "hangup"
            return f"200 result=-1 (hangup) endpos={endpos}\nHANGUP\n"
        if step.end == "dtmf":
            return f"200 result={ord('#')} (dtmf) endpos={endpos}\n"
        # result is the milliseconds left; 35 here would NOT be '#'
        return f"200 result=35 (timeout) endpos={endpos}\n"

    def _get_variable(self, args: list[str]) -> str:
        value = self.variables.get(args[0])
        return f"200 result=1 ({value})\n" if value is not None else "200 result=0\n"

    def _exec(self, args: list[str]) -> str:
        if args[0].lower() != "dial":
            return "200 result=0\n"
        step = self._next()
        status = step.status if isinstance(step, Dial) else "NOANSWER"
        self.variables["DIALSTATUS"] = status
        if status == "ANSWER":
            # the engineer talks, then hangs up: Dial returns -1 and the caller is gone
            self.dead = True
            self.trace.ended_by = "hangup"
            return "200 result=-1\nHANGUP\n"
        return "200 result=0\n"

    def _hangup(self, args: list[str]) -> str:
        self.dead = True
        return "200 result=1\n"
