"""The Flask application: dashboard, Twilio webhooks, health check."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from hotline import health
from hotline.db import Database, DatabaseUnavailable
from hotline.settings import Settings, load_settings
from hotline.storage import data_dir_writable


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
    # --- the dashboard ---
    app.config.update(
        SESSION_COOKIE_NAME="hotline_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        # A form left open over a shift still submits; the session bounds it anyway.
        WTF_CSRF_TIME_LIMIT=12 * 3600,
    )
    app.config.update(overrides or {})
    app.extensions["hotline.settings"] = settings
    app.extensions["hotline.db"] = db or Database(settings.database_url)
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    from web import boundary

    boundary.init_app(app)  # before any route (bounded ids) and any body read (CSRF reads forms)

    from ivr.twilio.webhooks import bp as twilio_bp

    app.register_blueprint(twilio_bp)
    from ivr.twilio.media import bp as twilio_media_bp  # live speech (Media Streams)

    app.register_blueprint(twilio_media_bp)

    @app.get("/healthz")
    def healthz() -> tuple[dict[str, str], int]:
        """For load balancers: 503 takes this node out while its database is unreachable
        or its data dir cannot be written (recordings and letters would be lost)."""
        try:
            app.extensions["hotline.db"].ping()
        except DatabaseUnavailable as exc:
            app.logger.warning("health check: %s", exc)
            return {"status": "database unavailable"}, 503
        # Outages the background parts found (an unwritable recordings folder, say).
        if problems := health.problems(settings.data_dir):
            return {"status": "; ".join(problems.values()) or "failing"}, 503
        if not data_dir_writable(settings.data_dir):
            app.logger.warning("health check: data dir %s is not writable", settings.data_dir)
            return {"status": "data dir not writable"}, 503
        return {"status": "ok"}, 200

    # --- the dashboard ---
    from web import dashboard

    dashboard.init_app(app)
    from web import intake

    app.register_blueprint(intake.bp)
    return app
