"""The AGI protocol as pure functions: the `agi_*` environment, reply lines, quoting.

Nothing here touches a socket; `ivr.asterisk.fastagi` feeds these functions the lines
it reads. Errors:

AgiError (HotlineError)
├── AgiProtocolError   a line that is not AGI (the peer is not Asterisk, or broke)
├── ChannelGone        the call ended: a hangup result, `511`, `HANGUP`, a closed socket
└── AgiCommandError    Asterisk refused a command: `510` unknown, `520` usage
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hotline.errors import HotlineError

ESCAPE_DIGITS = "0123456789*#"


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
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


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


def _known(value: str) -> str | None:
    value = value.strip()
    return None if value.lower() in {"", "unknown", "anonymous"} else value


def parse_env_line(line: str) -> tuple[str, str]:
    """One `agi_name: value` line; AgiProtocolError if it is anything else."""
    match = _ENV_LINE.match(line.rstrip("\r\n"))
    if match is None:
        raise AgiProtocolError(f"not an AGI environment line: {line[:80]!r}")
    return match.group(1), (match.group(2) or "")


def parse_environment(lines: list[str]) -> AgiEnvironment:
    """The environment from its lines (without the empty line that ends it)."""
    values = dict(parse_env_line(line) for line in lines)
    if "agi_uniqueid" not in values or not values["agi_uniqueid"]:
        raise AgiProtocolError("the AGI environment has no agi_uniqueid")
    return AgiEnvironment(values)


# --- replies -----------------------------------------------------------------

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
            raise AgiProtocolError(f"result is not a number: {self.result!r}") from None


@dataclass
class ReplyReader:
    """Collects the lines of one answer: `HANGUP` lines aside, a 520 block as one."""

    hung_up: bool = False
    _usage: list[str] = field(default_factory=list)

    def feed(self, line: str) -> Reply | None:
        """Take a line; the Reply when the answer is complete, None if more must come.

        Raises ChannelGone (511), AgiCommandError (510, 520) or AgiProtocolError.
        """
        line = line.rstrip("\r\n")
        if line == HANGUP_LINE:
            # Asterisk announces the hangup between answers; the answer still follows.
            self.hung_up = True
            return None
        if self._usage:
            self._usage.append(line)
            if line.startswith("520 "):
                usage, self._usage = self._usage, []
                raise AgiCommandError(520, "\n".join(usage))
            return None
        match = _CODE.match(line)
        if match is None:
            raise AgiProtocolError(f"not an AGI answer: {line[:80]!r}")
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
                return None
            raise AgiCommandError(520, rest)
        raise AgiProtocolError(f"unknown AGI answer code: {line[:80]!r}")


def parse_reply(line: str) -> Reply:
    """A `200 result=…` line into a Reply; AgiProtocolError if it is malformed."""
    match = _REPLY_200.match(line.rstrip("\r\n"))
    if match is None:
        raise AgiProtocolError(f"malformed 200 answer: {line[:80]!r}")
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
        raise AgiProtocolError(f"result is not a keypad key: {reply.result!r}")
    return key


def digits_of(reply: Reply) -> str:
    """GET DATA: the digits typed (maybe none); ChannelGone on -1."""
    if reply.result == "-1":
        raise ChannelGone("hangup during GET DATA")
    if reply.result and not all(c in ESCAPE_DIGITS for c in reply.result):
        raise AgiProtocolError(f"GET DATA result is not digits: {reply.result!r}")
    return reply.result


@dataclass(frozen=True)
class RecordOutcome:
    """How RECORD FILE ended: 'dtmf' (key), 'timeout' (length or silence), 'hangup', 'error'."""

    how: str
    key: str | None = None
    endpos: int | None = None


def record_outcome(reply: Reply) -> RecordOutcome:
    """RECORD FILE's answer read as docs/asterisk.md says: only `(dtmf)` makes result a key."""
    if reply.data == "hangup" or (reply.result == "-1" and reply.data is None):
        return RecordOutcome("hangup", endpos=reply.endpos)
    if reply.data == "dtmf":
        code = reply.value
        return RecordOutcome("dtmf", key=chr(code) if 0 < code < 128 else None, endpos=reply.endpos)
    if reply.data == "timeout":
        # result is the milliseconds left, not a key
        return RecordOutcome("timeout", endpos=reply.endpos)
    if reply.result == "-1":
        return RecordOutcome("error", endpos=reply.endpos)  # (writefile), (randomerror)
    return RecordOutcome("timeout", endpos=reply.endpos)


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
