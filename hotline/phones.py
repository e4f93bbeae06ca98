"""Phone numbers, parsed once at the boundary.

Every number that comes from outside (Twilio's `From`, the AGI caller id, `--phone`
on the command line, a number in an e-mail or a dashboard form) goes through
`parse_phone`, which uses Google's libphonenumber (the `phonenumbers` package) with
Russia as the default region: `8 343 567-45-30`, `+7 (343) 567 45 30` and
`73435674530` are all `+73435674530` in storage. What is not a telephone number is
kept as cleaned text with its kind beside it: a SIP URI (`sip:alice@pbx.example`)
or an extension (`101`) from Asterisk. A withheld number (`anonymous`, `unknown`,
empty) is None: the caller cannot be told apart from other withheld callers.

For people, `display_phone` gives the national format of Russian numbers
(`8 (343) 567-45-30`) and the international one of others; SMS goes only to what
`sms_number` accepts (a valid mobile number); the number of a new phone request goes
by SMS only to a Russian mobile (`russian_mobile`, +79…).

The helpers that read numbers for one purpose live here too, so that every reading
of a phone goes through libphonenumber: `same_number` (is this DID the hotline's?),
`dial_number` (what a PBX may dial for a stored phone) and `search_digits` (what an
engineer typed into a search field).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hotline.cleaning import clean_line
from hotline.errors import UserError

if TYPE_CHECKING:
    import phonenumbers

# phonenumbers is imported where a number is parsed or formatted, not with this module:
# its metadata costs a command that shows no phone (`request list`) 15-20 ms of start.

DEFAULT_REGION = "RU"
#: The width of the phone columns (calls.from_number, requests.contact_phone).
MAX_STORED = 40
#: Russian mobile numbers in E.164: the 9xx codes of the Russian numbering plan.
RUSSIAN_MOBILE_PREFIX = "+79"
_WITHHELD_WORDS = ("anonymous", "unknown", "restricted", "private", "unavailable", "blocked")
#: Twilio has sent withheld caller ids as the words' keypad digits (ANONYMOUS is
#: +266696687, RESTRICTED +7378742833; its changelog of 2022-11-16): no caller has them.
_KEYPAD = str.maketrans("abcdefghijklmnopqrstuvwxyz", "22233344455566677778889999")
WITHHELD = frozenset(
    {"", "<unknown>", *_WITHHELD_WORDS, *("+" + w.translate(_KEYPAD) for w in _WITHHELD_WORDS)}
)


class PhoneKind(enum.StrEnum):
    NUMBER = "number"  # a valid telephone number, stored in E.164
    SIP = "sip"  # a SIP/SIPS/tel URI that is not a number, kept as text
    OTHER = "other"  # an extension, a short code or garbage, kept as cleaned text


@dataclass(frozen=True)
class Phone:
    """A caller's or customer's number as the hotline stores it."""

    stored: str  # E.164 for a number, cleaned text (at most MAX_STORED) otherwise
    kind: PhoneKind
    mobile: bool = False
    original: str = ""  # the cleaned text as it came, when it differs from `stored`

    @property
    def is_number(self) -> bool:
        return self.kind is PhoneKind.NUMBER

    @property
    def truncated(self) -> bool:
        return len(self.original) > MAX_STORED and not self.is_number


def parse_phone(raw: str | None, region: str = DEFAULT_REGION) -> Phone | None:
    """The phone of untrusted text; None when it is withheld or empty. Never raises."""
    if raw and region == DEFAULT_REGION:
        stored = _E164.get(raw)
        if stored is not None:
            return stored
    return _parse((raw or "")[:MAX_ORIGINAL], region)


#: Numbers parsed already, by their E.164 form: what a parse of that form gives. A number
#: is parsed as it came (`79001234567`) and then again as stored (`+79001234567`), each a
#: ~90 µs parse; a burst of new callers did both on the event loop of FastAGI.
_E164: dict[str, Phone] = {}


MAX_ORIGINAL = 500  # no caller id is longer; what is longer is kept cut to this in notes


@functools.lru_cache(maxsize=4096)  # ~90 µs a parse; a caller's webhooks repeat one number
def _parse(raw: str, region: str) -> Phone | None:
    text = clean_line(raw)
    if text.lower() in WITHHELD:
        return None
    candidate = text
    lowered = text.lower()
    if lowered.startswith(("sip:", "sips:", "tel:")):
        user = text.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
        candidate = user if _looks_numeric(user) else ""
        if not candidate:
            return Phone(text[:MAX_STORED], PhoneKind.SIP, original=text)
    number = _parse_number(candidate, region)
    if number is None:
        kind = PhoneKind.SIP if lowered.startswith(("sip:", "sips:", "tel:")) else PhoneKind.OTHER
        return Phone(text[:MAX_STORED], kind, original=text)
    import phonenumbers

    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    mobile = phonenumbers.number_type(number) in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )
    if region == DEFAULT_REGION and e164 not in _E164:
        if len(_E164) >= 4096:
            _E164.clear()
        _E164[e164] = Phone(e164, PhoneKind.NUMBER, mobile=mobile)
    return Phone(e164, PhoneKind.NUMBER, mobile=mobile, original=text if text != e164 else "")


def stored_phone(raw: str | None) -> str | None:
    """What goes into a phone column for this untrusted text (None when withheld)."""
    phone = parse_phone(raw)
    return phone.stored if phone else None


def require_phone(raw: str) -> str:
    """A phone number a person typed (CLI, dashboard) in E.164; UserError if it is not one."""
    phone = parse_phone(raw)
    if phone is None or not phone.is_number:
        raise UserError(f"not a phone number: {clean_line(raw)[:60]!r} (for example +7 343 567-45-30)")
    return phone.stored


@functools.lru_cache(maxsize=4096)  # a page shows the same callers again and again
def _stored_number(stored: str | None) -> phonenumbers.PhoneNumber | None:
    """The telephone number a stored phone is (stored numbers are E.164); None for the rest."""
    return _parse_number(stored, DEFAULT_REGION) if stored and stored.startswith("+") else None


def display_phone(stored: str | None) -> str:
    """A stored phone for people: `8 (343) 567-45-30` in Russia, international elsewhere."""
    if not stored:
        return ""
    number = _stored_number(stored)
    if number is None:
        return stored
    import phonenumbers

    if phonenumbers.region_code_for_number(number) == DEFAULT_REGION:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def tel_uri(stored: str | None) -> str | None:
    """`tel:+73435674530`, a link that dials a stored telephone number from a phone; None for
    what no phone dials (a SIP URI, an extension, a withheld number)."""
    return f"tel:{stored}" if _stored_number(stored) is not None else None


def international_phone(stored: str) -> str:
    """`+7 343 567-45-30`: a number as printed in letters to anyone, anywhere."""
    number = _parse_number(stored, DEFAULT_REGION)
    if number is None:
        return stored
    import phonenumbers

    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def sms_number(stored: str | None) -> str | None:
    """The E.164 number an SMS may go to: only a valid mobile number, else None."""
    phone = parse_phone(stored)
    return phone.stored if phone is not None and phone.is_number and phone.mobile else None


def russian_mobile(stored: str | None) -> str | None:
    """The E.164 number (+79…) if this is a valid Russian mobile number, else None."""
    mobile = sms_number(stored)
    return mobile if mobile and mobile.startswith(RUSSIAN_MOBILE_PREFIX) else None


def same_number(one: str | None, other: str | None) -> bool:
    """True if both are the same telephone number, however written (+7 343…, 8 343…, 343…)."""
    a, b = parse_phone(one), parse_phone(other)
    return a is not None and b is not None and a.is_number and b.is_number and a.stored == b.stored


_DIALLABLE = re.compile(r"\+?\d{3,16}")


def dial_number(stored: str | None) -> str | None:
    """What a PBX dials for a stored phone (E.164, an extension's digits); None if nothing."""
    phone = parse_phone(stored)
    if phone is None or phone.kind is PhoneKind.SIP:
        return None
    if phone.is_number:
        return phone.stored
    digits = re.sub(r"[\s().\-]", "", phone.stored)
    return digits if _DIALLABLE.fullmatch(digits) else None


_PHONE_LIKE = re.compile(r"^[\d\s+()\-.]+$")


def search_digits(text: str) -> str:
    """The digits to look for in stored phones for what an engineer typed; '' if not phone-like.

    A whole number in any form is looked for as its E.164 digits (8 900 123-45-67 →
    79001234567); a piece of one (567-45) as the digits typed.
    """
    if not _PHONE_LIKE.match(text):
        return ""
    phone = parse_phone(text)
    if phone is not None and phone.is_number:
        return phone.stored.removeprefix("+")
    return re.sub(r"\D", "", text)


def _looks_numeric(text: str) -> bool:
    digits = text.lstrip("+")
    return bool(digits) and all(c.isdigit() or c in " -()." for c in digits)


def _parse_number(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    if not text or len(text) > 40 or not any(c.isdigit() for c in text):
        return None
    if not all(c.isascii() for c in text):
        return None
    import phonenumbers

    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None
