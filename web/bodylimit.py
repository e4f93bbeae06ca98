"""Request body limits: a stranger's megabytes are refused before they are read.

Every dashboard form is small; only a view marked with `accepts_uploads` takes a
body up to HOTLINE_ATTACHMENT_MAX_BYTES (Flask's MAX_CONTENT_LENGTH). The Twilio
webhooks set their own, smaller limit (ivr.twilio.webhooks.MAX_BODY).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, Response, request

FORM_MAX_BYTES = 256 * 1024

F = TypeVar("F", bound=Callable[..., object])


def accepts_uploads(view: F) -> F:
    """Mark a view that takes files: it gets the attachment limit, not the form limit."""
    view.accepts_uploads = True  # type: ignore[attr-defined]
    return view


def init_app(app: Flask) -> None:
    """Limit every body to FORM_MAX_BYTES except on views marked `accepts_uploads`."""

    @app.before_request
    def limit_body() -> Response | None:
        view = app.view_functions.get(request.endpoint or "")
        if view is not None and getattr(view, "accepts_uploads", False):
            return None
        if request.content_length is not None and request.content_length > FORM_MAX_BYTES:
            return Response("request body too large", status=413, mimetype="text/plain")
        request.max_content_length = FORM_MAX_BYTES  # a chunked body is cut off while read
        return None
