"""Limits at the web boundary: body sizes, and integers in URLs.

Every dashboard form is small; only a view marked with `accepts_uploads` takes a
body up to HOTLINE_ATTACHMENT_MAX_BYTES (Flask's MAX_CONTENT_LENGTH). The Twilio
webhooks set their own, smaller limit (ivr.twilio.webhooks.MAX_BODY).

`<int:…>` in a route matches only what fits the database's integer columns: a huge
id is "no such page" (404), never an error from the database (500). `int_arg` does
the same for query and form values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Flask, Response, abort, request
from werkzeug.routing import IntegerConverter, Map

FORM_MAX_BYTES = 256 * 1024
MAX_ID = 2**31 - 1  # the ids are INTEGER columns

F = TypeVar("F", bound=Callable[..., object])


def accepts_uploads(view: F) -> F:
    """Mark a view that takes files: it gets the attachment limit, not the form limit."""
    view.accepts_uploads = True  # type: ignore[attr-defined]
    return view


class BoundedInt(IntegerConverter):
    """Werkzeug's `int`, limited to 0 … MAX_ID unless the route says otherwise."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:  # noqa: A002 - werkzeug's name
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def int_arg(values: Mapping[str, str], name: str, *, low: int = 0, high: int = MAX_ID) -> int | None:
    """An integer query or form value within [low, high], None when absent or out of range."""
    raw = values.get(name, "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        return None
    value = int(raw)
    return value if low <= value <= high else None


def init_app(app: Flask) -> None:
    """Bound `<int:…>` and limit every body (call before any route is added)."""
    app.url_map.converters["int"] = BoundedInt

    @app.before_request
    def limit_body() -> Response | None:
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and getattr(view, "accepts_uploads", False):
            return None
        if request.blueprint == "twilio":
            return None  # its own, smaller limit (ivr.twilio.webhooks.MAX_BODY), read by nobody before
        if request.content_length is not None and request.content_length > FORM_MAX_BYTES:
            abort(413)  # a Russian page (web.dashboard), Twilio's own plain answer
        chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        if request.content_length is None and chunked:
            # Werkzeug cuts a chunked body at max_content_length without a word, and a
            # note would be saved cut short: read one byte more to know, then refuse.
            request.max_content_length = FORM_MAX_BYTES + 1
            if len(request.get_data(cache=True)) > FORM_MAX_BYTES:
                abort(413)
        request.max_content_length = FORM_MAX_BYTES
        return None
