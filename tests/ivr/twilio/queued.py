"""The Twilio webhooks with the call-log writer of `hotline serve` (ivr.twilio.behind).

`SettledTransport` waits, after each webhook, until the writer has committed what the webhook queued, so
that a test reads the call log as the row path would have left it.
"""

from __future__ import annotations

import httpx

from ivr.twilio import behind


class SettledTransport(httpx.WSGITransport):
    """The app, called in-process; each answer after the call-log queue is written."""

    def __init__(self, app, queue: behind.LogQueue):
        super().__init__(app=app)
        self.queue = queue

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        assert self.queue.flush(30), "the call-log writer did not write the queue"
        return response
