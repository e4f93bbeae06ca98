"""The Flask application: dashboard, Twilio webhooks, health check."""

from __future__ import annotations

from typing import Any

from flask import Flask

from hotline.db import Database
from hotline.settings import Settings, load_settings


def create_app(
    overrides: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    db: Database | None = None,
) -> Flask:
    """Build the application. `overrides` go into Flask's config (tests set TESTING etc.)."""
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=settings.attachment_max_bytes + (1 << 20)
    )
    app.config.update(overrides or {})
    app.extensions["hotline.settings"] = settings
    app.extensions["hotline.db"] = db or Database(settings.database_url)

    from ivr.twilio_webhooks import bp as twilio_bp

    app.register_blueprint(twilio_bp)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
