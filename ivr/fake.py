"""An in-memory `CallPort` for tests and the demo mode of `hotline call`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from hotline.numbers import make_request_number
from hotline.settings import BusinessHours
from ivr.flow import Recording, RequestInfo


@dataclass
class FakeCallPort:
    """Requests in a dict; every recording and lookup kept for inspection."""

    requests: dict[str, RequestInfo] = field(default_factory=dict)
    today_is: dt.date = dt.date(2025, 11, 24)
    lookups: int = 0
    open: bool = True
    target: str | None = "+73430000000"
    hours: BusinessHours | None = BusinessHours(
        frozenset(range(5)), dt.time(9), dt.time(18), ZoneInfo("Europe/Moscow")
    )
    opened: list[tuple[str, str, Recording]] = field(default_factory=list)  # number, kind, recording
    information: list[tuple[str, Recording]] = field(default_factory=list)
    attached: list[tuple[str, Recording]] = field(default_factory=list)
    sms: bool = False  # new requests' numbers go to the caller by SMS
    _sequence: int = 2000

    def add_request(
        self, kind: str, status: str, changed_on: dt.date | None = None, question: str | None = None
    ) -> str:
        """A request the caller can ask about (with the engineer's open question); its number."""
        number = self._next_number()
        self.requests[number] = RequestInfo(number, kind, status, changed_on or self.today_is, question)
        return number

    def _next_number(self) -> str:
        self._sequence += 1
        return make_request_number(self._sequence)

    def today(self) -> dt.date:
        return self.today_is

    def find_request(self, number: str) -> RequestInfo | None:
        self.lookups += 1
        return self.requests.get(number)

    def recent_lookups(self) -> int:
        return self.lookups

    def open_voice_request(self, kind: str, recording: Recording) -> str:
        number = self._next_number()
        self.requests[number] = RequestInfo(number, kind, "new", self.today_is)
        self.opened.append((number, kind, recording))
        return number

    def add_information(self, number: str, recording: Recording) -> None:
        self.information.append((number, recording))
        info = self.requests[number]
        if info.status == "awaiting_info":
            self.requests[number] = RequestInfo(number, info.kind, "in_progress", self.today_is)

    def attach_recording(self, number: str, recording: Recording) -> None:
        if all(r.ref != recording.ref for _, r in self.attached):
            self.attached.append((number, recording))

    def duty_open(self) -> bool:
        return self.open

    def duty_target(self) -> str | None:
        return self.target

    def number_sms_queued(self, number: str) -> bool:
        return self.sms and any(n == number for n, _, _ in self.opened)

    def duty_hours(self) -> BusinessHours | None:
        return self.hours
