"""Text from outside, made safe to store and to print: one helper for every boundary.

Twilio's form fields, AGI variables, e-mail headers and bodies, dashboard forms and
command-line options all pass through `clean_text` (or `clean_line` for one-line
values) before they are stored or printed:

- NUL and the other control characters are removed (PostgreSQL refuses NUL in text;
  a terminal obeys escape sequences), and so are whole ANSI escape sequences
  (`ESC [ 31 m`), so that nothing of them is left to show; tabs and line breaks stay
  in multi-line text, and become spaces in one-line values;
- lone surrogates (undecodable bytes of a bad e-mail) become U+FFFD, so that every
  database driver can encode the text;
- Unicode direction overrides (which make text read differently than it is stored)
  are removed;
- with a limit, the text is cut to the width of its column.

`Cleaned` tells what was changed, so the caller can keep a note of it: input is
stored cleaned, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# CSI (ESC [ … final), OSC (ESC ] … BEL or ST), and any other two-character escape.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\t\u2028\u2029\x85]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


@dataclass
class Cleaned:
    """Cleaned text and what was done to it (Russian, for a note an engineer reads)."""

    text: str
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.notes)


def clean(
    raw: str | None, limit: int | None = None, *, multiline: bool = True, what: str = "текст"
) -> Cleaned:
    """Clean untrusted text; `what` names it in the notes ("тема письма")."""
    text = raw or ""
    notes: list[str] = []
    if _SURROGATES.search(text):
        text = _SURROGATES.sub("\ufffd", text)
        notes.append(f"{what}: нечитаемые символы заменены на «\ufffd»")
    if "\x00" in text or _CONTROLS.search(text) or "\x1b" in text:
        text = _ESCAPES.sub("", text)
        if not multiline:
            text = _LINE_BREAKS.sub(" ", text)
        text = _CONTROLS.sub("", text.replace("\r\n", "\n") if multiline else text)
        notes.append(f"{what}: удалены управляющие символы")
    elif not multiline and _LINE_BREAKS.search(text):
        text = _LINE_BREAKS.sub(" ", text)
    if not multiline:
        text = text.strip()
    if limit is not None and len(text) > limit:
        notes.append(f"{what}: обрезано до {limit} символов из {len(text)}")
        text = text[:limit]
    return Cleaned(text, notes)


def clean_text(raw: str | None, limit: int | None = None) -> str:
    """Multi-line text, cleaned (line breaks and tabs kept)."""
    return clean(raw, limit).text


def clean_line(raw: str | None, limit: int | None = None) -> str:
    """A one-line value, cleaned: line breaks and tabs become spaces, ends stripped."""
    return clean(raw, limit, multiline=False).text


def printable(raw: str | None) -> str:
    """Stored text for a terminal: one line, nothing a terminal would obey."""
    return clean_line(raw)


def email_address(raw: str | None) -> str | None:
    """An e-mail address a person typed, cleaned; None if it cannot be one (no local part,
    no dot in the domain, over 254 characters, or spaces, brackets, quotes or separators)."""
    address = clean_line(raw)
    local, _, domain = address.rpartition("@")
    if not local or "." not in domain or len(address) > 254 or any(c in address for c in " <>,;\"'"):
        return None
    return address
