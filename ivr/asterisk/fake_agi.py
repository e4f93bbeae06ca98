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
HANGUP = "hangup"  # the caller hangs up during the next command (its answer, then `HANGUP`)
DROP = "drop"  # the socket drops during the next command
REPLY_510 = "510"  # the next command is answered 510
REPLY_520 = "520"  # the next command is answered with a 520 usage block


@dataclass(frozen=True)
class Record:
    """The caller speaks for `seconds`, then `end`:

    - 'dtmf': presses # (`200 result=35 (dtmf) endpos=…`);
    - 'timeout': goes quiet until the silence stop, or talks to the length limit
      (`200 result=<ms left> (timeout) endpos=…`; a silence stop leaves 1 s of silence
      in the file, so `Record(0, "timeout")` is the ~1.006 s silent file of a caller who
      said nothing);
    - 'hangup': hangs up while speaking (`200 result=-1 (hangup) endpos=…`, then `HANGUP`);
    - 'beep_hangup': hangs up during the beep (`200 result=-1 (randomerror) endpos=0`,
      then `HANGUP`; no file);
    - 'beep_key': presses # during the beep (`200 result=35 (randomerror) endpos=0`; no file).

    A folder Asterisk cannot write into answers `200 result=-1 (writefile)` whatever the caller does.
    """

    seconds: float = 2.0
    end: str = "dtmf"
    then: Callable[[], None] | None = None  # run once the file is written (cut the database, say)
    takes: float = 0.0  # real seconds before the answer (a recording still going on)


@dataclass(frozen=True)
class Hold:
    """Asterisk answers the next command `seconds` late (a long prompt, a caller thinking)."""

    seconds: float


@dataclass(frozen=True)
class Dial:
    """What Dial to the duty engineer gives: ANSWER, NOANSWER, BUSY, CHANUNAVAIL."""

    status: str = "ANSWER"


Step = str | Record | Dial | Hold


@dataclass
class CallTrace:
    """What happened in one fake call: commands, the prompts heard, files recorded."""

    commands: list[str] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    recordings: list[Path] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)
    #: Seconds from the environment sent to the first command (the caller still hears ringing).
    first_command: float | None = None
    ended_by: str = ""  # "hotline" (HANGUP or closed socket) or the caller's "hangup"/"drop"
    #: AGISTATUS when the session ended: FAILURE after a `FAILURE` line, or after a command
    #: that failed with the channel up (a missing prompt, an unwritable folder); else SUCCESS.
    agistatus: str = ""
    #: The dialplan's next step took the caller to the fallback (voicemail): the channel was
    #: still up when the session ended with AGISTATUS=FAILURE.
    fallback: bool = False


SILENCE_KEPT = 1.00625  # seconds of silence Asterisk leaves at the end after a silence stop


def write_wav(path: Path, seconds: float, rate: int = 8000, *, silence_after: float = 0.0) -> None:
    """A real 16-bit mono WAV (Asterisk's `wav` format is this, at 8 kHz): `seconds` of a
    voice-like sound (a tone in syllables, 3 a second), then `silence_after` seconds of
    the quiet noise of a phone line."""
    voiced = int(seconds * rate)
    total = voiced + int(silence_after * rate)
    noise = 7  # a fixed pseudo-random line noise, about -60 dBFS
    samples = []
    for n in range(total):
        noise = (noise * 1103515245 + 12345) & 0x7FFFFFFF
        hiss = (noise >> 16) % 64 - 32
        if n < voiced:
            envelope = abs(math.sin(math.pi * 3 * n / rate))
            samples.append(int(9000 * envelope * math.sin(2 * math.pi * 440 * n / rate)) + hiss)
        else:
            samples.append(hiss)
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
    "CHANNEL STATUS",
    "STREAM FILE",
    "WAIT FOR DIGIT",
    "GET DATA",
    "RECORD FILE",
    "GET VARIABLE",
    "EXEC",
    "HANGUP",
)


def _readable_by_asterisk(sound: str) -> bool:
    """An absolute path (free text the hotline synthesised) is played only if some file
    of it is readable by others: Asterisk runs as its own user, not the hotline's."""
    if not sound.startswith("/"):
        return True  # a shipped prompt under Asterisk's sounds folder
    path = Path(sound)
    return any(f.stat().st_mode & 0o004 for f in path.parent.glob(path.name + ".*"))


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
        missing: Iterable[str] = (),
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
        #: Sound files Asterisk does not have (as STREAM FILE names them; "beep" for the beep).
        self.missing = set(missing)
        self.failed = False  # a command failed with the channel up: AGISTATUS=FAILURE at the end

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
        connected_at = time.perf_counter()
        sent_at: float | None = None
        while True:
            try:
                raw = await reader.readline()
            except ConnectionError:
                raw = b""
            if not raw:
                # The script closed the session: the dialplan goes on (AGISTATUS by what failed).
                self.trace.ended_by = self.trace.ended_by or "hotline"
                self._session_ended("FAILURE" if self.failed else "SUCCESS")
                return
            if sent_at is not None:
                self.trace.round_trips.append(time.perf_counter() - sent_at)
            elif self.trace.first_command is None:
                self.trace.first_command = time.perf_counter() - connected_at
            line = raw.decode().rstrip("\n")
            if self.gate is not None:
                gate, self.gate = self.gate, None
                await gate()
            self.trace.commands.append(line)
            if line.startswith("FAILURE"):
                # res_agi.c: the script says it failed; Asterisk ends the AGI with
                # AGISTATUS=FAILURE, tells the socket HANGUP and closes it.
                self.trace.ended_by = self.trace.ended_by or "hotline"
                self._session_ended("FAILURE")
                with contextlib.suppress(ConnectionError):
                    writer.write(b"HANGUP\n")
                    await writer.drain()
                return
            hold = self._peek()
            if isinstance(hold, Hold):
                self._next()
                await asyncio.sleep(hold.seconds)
            elif isinstance(hold, Record) and hold.takes and line.startswith("RECORD FILE"):
                await asyncio.sleep(hold.takes)
            answer = self.answer(line)
            if answer is None:  # the socket drops
                self.trace.ended_by = "drop"
                writer.transport.abort()
                return
            try:
                writer.write(answer.encode())
                await writer.drain()
            except ConnectionError:  # the script is gone: Asterisk ends the AGI
                self.trace.ended_by = self.trace.ended_by or "hotline"
                self._session_ended("FAILURE" if self.failed else "SUCCESS")
                return
            sent_at = time.perf_counter()

    def _session_ended(self, agistatus: str) -> None:
        self.trace.agistatus = agistatus
        self.trace.fallback = not self.dead and agistatus == "FAILURE"

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
        # A prompt Asterisk does not have fails at once, with no wait on the channel: a
        # hang-up scripted for it comes during the next command.
        if step == HANGUP and not (name == "STREAM FILE" and args and self._cannot_play(args[0])):
            return self._hang_up(name, args)
        return getattr(self, "_" + name.lower().replace(" ", "_"))(args)

    def _hang_up(self, name: str, args: list[str]) -> str:
        """The caller hangs up during this command: its answer, then `HANGUP` (res_agi.c's
        loop notices the hang-up after the command and says so; every later command is 511)."""
        self._next()
        self.dead = True
        self.trace.ended_by = "hangup"
        if name == "RECORD FILE":
            return "200 result=-1 (hangup) endpos=0\nHANGUP\n"
        if name == "ANSWER":
            # Gone before the answer: the HANGUP line comes first (docs/asterisk.md: "at any time").
            return "HANGUP\n511 Command Not Permitted on a dead channel or intercept routine\n"
        if name == "STREAM FILE":
            # The same first line as a missing file; only the next command tells them apart.
            return "200 result=-1 endpos=0\nHANGUP\n"
        if name == "CHANNEL STATUS":
            # handle_channelstatus reports the state, which a hang-up leaves at 6 (up).
            return "200 result=6\nHANGUP\n"
        if name == "GET VARIABLE":
            return self._get_variable(args) + "HANGUP\n"  # handle_getvariable does not look
        if name == "HANGUP":
            return "200 result=1\nHANGUP\n"  # handle_hangup answers 1 whatever the channel did
        return "200 result=-1\nHANGUP\n"  # WAIT FOR DIGIT, GET DATA, EXEC: their wait ends with -1

    def _answer(self, args: list[str]) -> str:
        return "200 result=0\n"

    def _channel_status(self, args: list[str]) -> str:
        return "200 result=6\n"  # up (a dead channel got 511 above)

    def _cannot_play(self, sound: str) -> bool:
        return sound in self.missing or not _readable_by_asterisk(sound)

    def _stream_file(self, args: list[str]) -> str:
        if self._cannot_play(args[0]):
            # "File ... does not exist in any format": the channel stays up, no HANGUP follows.
            self.failed = True
            return "200 result=-1 endpos=0\n"
        self.trace.heard.append(args[0])
        step = self._peek()
        if isinstance(step, str) and step.startswith("!"):
            self._next()
            if args[1] and step[1] in args[1]:
                return f"200 result={ord(step[1])} endpos=6400\n"
            return "200 result=0 endpos=51622\n"  # no escape digits: the key is lost
        return "200 result=0 endpos=51622\n"

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
            return self._hang_up("WAIT FOR DIGIT", args)
        key = self._key()
        return f"200 result={ord(key) if key else 0}\n"

    def _get_data(self, args: list[str]) -> str:
        self.trace.heard.append(args[0])
        if not self.script:
            # handle_getdata answers -1; the HANGUP line follows (511 for what comes after).
            return self._hang_up("GET DATA", args)
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
        beep = any(not a.startswith("s=") for a in args[5:])
        if beep and "beep" in self.missing:
            # The beep cannot play; the channel is still up. handle_recordfile returns
            # RESULT_SUCCESS after `(randomerror)`: AGISTATUS is not made FAILURE.
            return "200 result=-1 (randomerror) endpos=0\n"
        step = self._next()
        if not isinstance(step, Record):
            step = Record(seconds=0.0, end="timeout") if step in (SILENCE, None) else Record()
        path = Path(f"{args[0]}.{args[1]}")
        if step.end == "beep_hangup":
            self.dead = True
            self.trace.ended_by = "hangup"
            return "200 result=-1 (randomerror) endpos=0\nHANGUP\n"
        if step.end == "beep_key":
            return f"200 result={ord('#')} (randomerror) endpos=0\n"  # no file written
        max_ms = int(args[3]) if len(args) > 3 and args[3].isdigit() else 180000
        silence_s = next((int(a[2:]) for a in args[5:] if a.startswith("s=") and a[2:].isdigit()), 0)
        limit = step.seconds * 1000 >= max_ms
        # A silence stop keeps 1 s of the silence (the rest is cut off the file).
        kept = SILENCE_KEPT if step.end == "timeout" and not limit and silence_s else 0.0
        if self.shared_folder:
            try:
                write_wav(path, min(step.seconds, max_ms / 1000), silence_after=kept)
            except OSError:
                # "Unable to open file ...: Operation not permitted"; the channel is up.
                self.failed = True
                return "200 result=-1 (writefile)\n"
            self.trace.recordings.append(path)
        if step.then is not None:
            step.then()
        endpos = int((min(step.seconds, max_ms / 1000) + kept) * 8000)
        if step.end == "hangup":
            self.dead = True
            self.trace.ended_by = "hangup"
            return f"200 result=-1 (hangup) endpos={endpos}\nHANGUP\n"
        if step.end == "dtmf":
            return f"200 result={ord('#')} (dtmf) endpos={endpos}\n"
        # result is the milliseconds left (0 at the length limit); it is NOT a key
        left = 0 if limit else max(0, max_ms - int((step.seconds + silence_s) * 1000))
        return f"200 result={left} (timeout) endpos={endpos}\n"

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
        # The script hung up: res_agi.c's loop then reads the hang-up and says `HANGUP`.
        self.dead = True
        return "200 result=1\nHANGUP\n"
