"""The AGI protocol as pure functions: the `agi_*` environment, reply lines, quoting.

Nothing here touches a socket; `ivr.asterisk.fastagi` feeds these functions the lines
it reads. Errors:

AgiError (HotlineError)
├── AgiProtocolError   a line that is not AGI (the peer is not Asterisk, or broke)
├── ChannelGone        the call ended: a hangup result, `511`, `HANGUP`, a closed socket
├── AgiCommandError    Asterisk refused a command: `510` unknown, `520` usage
└── AnswerTimeout      Asterisk did not answer a command in time

Everything the peer sends is untrusted (anyone on the PBX's network can reach the
FastAGI port): the environment and the answers are bounded here (`MAX_*`), values
that end up in file names must match `UNIQUEID`, and text from the peer is cut with
`clip()` before it is stored or logged.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from hotline.errors import HotlineError

ESCAPE_DIGITS = "0123456789*#"

MAX_LINE = 8 * 1024  # bytes in one line from Asterisk (its own buffer is 2 KiB)
MAX_ENV_LINES = 200  # agi_* variables: Asterisk sends about 20 plus the dialplan arguments
MAX_ENV_BYTES = 64 * 1024
MAX_USAGE_LINES = 100  # a `520-` usage block: Asterisk's longest is about 40 lines
MAX_USAGE_BYTES = 16 * 1024
MAX_TEXT = 200  # characters of peer text kept in a log line or a call-log field

#: An Asterisk uniqueid (`1700000000.42`, or `<systemname>-1700000000.42` when asterisk.conf
#: sets systemname): the only shape allowed in the name of a recording.
UNIQUEID = re.compile(r"^(?:[A-Za-z0-9_]{1,40}-)?[0-9]{1,20}\.[0-9]{1,10}$")


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Peer text made safe to store or log: printable, one line, at most `limit` characters."""
    if len(text) <= limit and text.isprintable():
        return text  # nearly always (a channel name, a hang-up cause): no pass per character
    cleaned = "".join(c if c.isprintable() else " " for c in text[: limit * 4])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class AgiError(HotlineError):
    """Something went wrong between the hotline and Asterisk."""


class AgiProtocolError(AgiError):
    """A line that does not follow the AGI protocol."""


class ChannelGone(AgiError):
    """The caller's channel is gone: hung up, dead, or the socket closed."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AgiCommandError(AgiError):
    """Asterisk refused a command (510 unknown command, 520 wrong usage)."""

    def __init__(self, code: int, message: str):
        message = clip(message)
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class AnswerTimeout(AgiError):
    """Asterisk did not answer a command within the configured time."""


# --- the environment block -------------------------------------------------

_ENV_LINE = re.compile(r"^(agi_[a-z0-9_]+):(?: (.*))?$")


@dataclass(frozen=True)
class AgiEnvironment:
    """The `agi_*` variables Asterisk sends when a session starts."""

    values: dict[str, str]

    def get(self, name: str) -> str:
        return self.values.get(f"agi_{name}", "")

    @property
    def uniqueid(self) -> str:
        """The channel's uniqueid; checked against `UNIQUEID` by `parse_environment`."""
        return self.get("uniqueid")

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def extension(self) -> str:
        return self.get("extension")

    @property
    def network_script(self) -> str:
        return self.get("network_script")

    @property
    def callerid(self) -> str | None:
        """The caller's number, None when withheld (`unknown`) or empty."""
        return _known(self.get("callerid"))

    @property
    def calleridname(self) -> str | None:
        return _known(self.get("calleridname"))

    @property
    def args(self) -> list[str]:
        """`agi_arg_1`, `agi_arg_2`, … in order (dialplan arguments of AGI())."""
        found = []
        n = 1
        while f"agi_arg_{n}" in self.values:
            found.append(self.values[f"agi_arg_{n}"])
            n += 1
        return found


MAX_CALLER = 40  # Call.from_number's column


def _known(value: str) -> str | None:
    """A caller id as stored: printable, at most MAX_CALLER characters; None when withheld."""
    value = "".join(c for c in value if c.isprintable()).strip()[:MAX_CALLER].strip()
    return None if value.lower() in {"", "unknown", "anonymous"} else value


def parse_env_line(line: str) -> tuple[str, str]:
    """One `agi_name: value` line; AgiProtocolError if it is anything else."""
    match = _ENV_LINE.match(line.rstrip("\r\n"))
    if match is None:
        raise AgiProtocolError(f"not an AGI environment line: {clip(line, 80)!r}")
    return match.group(1), (match.group(2) or "")


def parse_environment(lines: list[str]) -> AgiEnvironment:
    """The environment from its lines (without the empty line that ends it).

    AgiProtocolError if it is too big, malformed, or its agi_uniqueid is not a uniqueid.
    """
    if len(lines) > MAX_ENV_LINES or sum(len(line) for line in lines) > MAX_ENV_BYTES:
        raise AgiProtocolError("the AGI environment is too big")
    values = dict(parse_env_line(line) for line in lines)
    uniqueid = values.get("agi_uniqueid", "")
    if not uniqueid:
        raise AgiProtocolError("the AGI environment has no agi_uniqueid")
    if not UNIQUEID.match(uniqueid):
        raise AgiProtocolError(f"agi_uniqueid is not an Asterisk uniqueid: {clip(uniqueid, 80)!r}")
    return AgiEnvironment(values)


# --- replies -----------------------------------------------------------------

#: A line that makes Asterisk end the AGI session with AGISTATUS=FAILURE (res_agi.c takes
#: it for "the script could not run"), so that the dialplan's fallback takes the call.
FAILURE_LINE = "FAILURE\n"

_REPLY_200 = re.compile(r"^200 result=(\S*)(?: \((.*)\))?(?: endpos=(-?\d+))?$")
_CODE = re.compile(r"^(\d{3})([ -])(.*)$")
HANGUP_LINE = "HANGUP"


@dataclass(frozen=True)
class Reply:
    """A `200 result=… (data) endpos=…` answer."""

    result: str
    data: str | None = None
    endpos: int | None = None

    @property
    def value(self) -> int:
        """The result as an integer (digits, ASCII codes, -1); AgiProtocolError otherwise."""
        try:
            return int(self.result)
        except ValueError:
            raise AgiProtocolError(f"result is not a number: {clip(self.result, 40)!r}") from None


@dataclass
class ReplyReader:
    """Collects the lines of one answer: `HANGUP` lines aside, a 520 block as one."""

    hung_up: bool = False
    _usage: list[str] = field(default_factory=list)
    _usage_bytes: int = 0

    def feed(self, line: str) -> Reply | None:
        """Take a line; the Reply when the answer is complete, None if more must come.

        Raises ChannelGone (511), AgiCommandError (510, 520) or AgiProtocolError.
        """
        line = line.rstrip("\r\n")
        if line.startswith("200 ") and not self._usage:
            return parse_reply(line)  # nearly every answer
        if line == HANGUP_LINE:
            # Asterisk announces the hangup between answers; the answer still follows.
            self.hung_up = True
            return None
        if self._usage:
            if line.startswith("520 "):
                usage, self._usage, self._usage_bytes = self._usage, [], 0
                raise AgiCommandError(520, " / ".join(usage))
            self._usage_bytes += len(line)
            if len(self._usage) >= MAX_USAGE_LINES or self._usage_bytes > MAX_USAGE_BYTES:
                raise AgiProtocolError("a 520 usage block that never ends")
            self._usage.append(line)
            return None
        match = _CODE.match(line)
        if match is None:
            raise AgiProtocolError(f"not an AGI answer: {clip(line, 80)!r}")
        code, sep, rest = int(match.group(1)), match.group(2), match.group(3)
        if code == 200:
            return parse_reply(line)
        if code == 511:
            raise ChannelGone(f"511 {rest}")
        if code == 510:
            raise AgiCommandError(510, rest)
        if code == 520:
            if sep == "-":
                self._usage.append(rest)
                self._usage_bytes = len(rest)
                return None
            raise AgiCommandError(520, rest)
        raise AgiProtocolError(f"unknown AGI answer code: {clip(line, 80)!r}")


def parse_reply(line: str) -> Reply:
    """A `200 result=…` line into a Reply; AgiProtocolError if it is malformed."""
    match = _REPLY_200.match(line.rstrip("\r\n"))
    if match is None:
        raise AgiProtocolError(f"malformed 200 answer: {clip(line, 80)!r}")
    result, data, endpos = match.groups()
    return Reply(result=result, data=data, endpos=int(endpos) if endpos is not None else None)


# --- what a result means, per command ------------------------------------------


def digit_of(reply: Reply) -> str | None:
    """STREAM FILE / WAIT FOR DIGIT: the key pressed, None if none; ChannelGone on -1."""
    if reply.result == "":
        return None
    code = reply.value
    if code < 0:
        raise ChannelGone("hangup during playback or wait")
    if code == 0:
        return None
    key = chr(code)
    if key not in ESCAPE_DIGITS:
        raise AgiProtocolError(f"result is not a keypad key: {clip(reply.result, 40)!r}")
    return key


def digits_of(reply: Reply) -> str:
    """GET DATA: the digits typed (maybe none); ChannelGone on -1."""
    if reply.result == "-1":
        raise ChannelGone("hangup during GET DATA")
    if reply.result and not all(c in ESCAPE_DIGITS for c in reply.result):
        raise AgiProtocolError(f"GET DATA result is not digits: {clip(reply.result, 40)!r}")
    return reply.result


@dataclass(frozen=True)
class Playback:
    """How STREAM FILE ended: the key that interrupted it, or `failed` (`result=-1`).

    A failed playback is either a hang-up or a file Asterisk cannot find: both answer
    `200 result=-1 endpos=0`, and only the next command tells them apart (docs/asterisk.md).
    """

    key: str | None = None
    failed: bool = False


def playback_of(reply: Reply) -> Playback:
    """STREAM FILE's answer: the key pressed, none, or a failure to be told apart."""
    if reply.result == "-1":
        return Playback(failed=True)
    return Playback(key=digit_of(reply))


@dataclass(frozen=True)
class RecordOutcome:
    """How RECORD FILE ended.

    `how` is one of: 'dtmf' (a key ended it), 'timeout' (length or silence),
    'hangup' (the caller hung up while speaking; the file is kept), 'beep_key' (a key
    during the beep: nothing recorded), 'beep_failed' (`-1` during the beep: a hang-up
    if `HANGUP` follows, else the beep could not be played), 'unwritable' (Asterisk
    cannot write the file), 'error' (anything else).
    """

    how: str
    key: str | None = None
    endpos: int | None = None


def record_outcome(reply: Reply) -> RecordOutcome:
    """RECORD FILE's answer read as docs/asterisk.md says: only `(dtmf)` makes result a key."""
    data, endpos = reply.data, reply.endpos
    if data == "hangup" or (reply.result == "-1" and data is None):
        return RecordOutcome("hangup", endpos=endpos)
    if data == "dtmf":
        code = reply.value
        return RecordOutcome("dtmf", key=chr(code) if 0 < code < 128 else None, endpos=endpos)
    if data == "timeout":
        # result is the milliseconds left, not a key
        return RecordOutcome("timeout", endpos=endpos)
    if data == "randomerror":
        # Asterisk plays the beep with the escape digits: a key or a hang-up stops it
        # before the file is opened.
        if reply.result == "-1":
            return RecordOutcome("beep_failed", endpos=endpos)
        return RecordOutcome("beep_key", endpos=endpos)
    if data == "writefile":
        return RecordOutcome("unwritable", endpos=endpos)
    if reply.result == "-1":
        return RecordOutcome("error", endpos=endpos)  # (waitfor)
    return RecordOutcome("timeout", endpos=endpos)


def channel_alive(reply: Reply) -> bool:
    """CHANNEL STATUS answered (a dead channel answers 511 instead): any state is alive."""
    return reply.result != "-1"


def variable_of(reply: Reply) -> str | None:
    """GET VARIABLE: the value, None if the variable is not set."""
    return reply.data if reply.result == "1" else None


# --- commands --------------------------------------------------------------------

_NEEDS_QUOTES = re.compile(r'[\s"\\]')


def quote(arg: str | int) -> str:
    """One argument as Asterisk's parser reads it back (quotes, backslash escapes)."""
    text = str(arg)
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError("an AGI argument cannot contain a line break or NUL")
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command(name: str, *args: str | int) -> str:
    """A command line: the command name as it is (`STREAM FILE`), then quoted arguments."""
    return " ".join([name, *(quote(a) for a in args)]) + "\n"


@functools.lru_cache(maxsize=4096)  # a call says the same few hundred prompts and waits
def command_line(name: str, args: tuple[str | int, ...]) -> bytes:
    """`command(name, *args)` as the bytes sent to Asterisk."""
    return command(name, *args).encode()
