"""The engineers' dashboard: sessions, security, templates and the blueprints of each area.

Everything here needs a login except the login page itself, `/healthz` and the
`twilio` blueprint (Twilio authenticates with its request signature, not a session,
and cannot send a CSRF token).
"""

from __future__ import annotations

from flask import Flask, Response, render_template, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from flask.wrappers import Request
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from hotline.db import DatabaseUnavailable, unavailable
from web import auth, calls, export, files, formatting, live, overview, requests, users
from web.db import close_session

#: Blueprints that authenticate in their own way and take no CSRF token.
CSRF_EXEMPT_BLUEPRINTS = frozenset({"twilio"})

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


#: The error page's title and text by HTTP status, instead of Werkzeug's English.
ERRORS = {
    400: ("Неверный запрос", "Сервер не понял запрос. Обновите страницу и повторите действие."),
    403: (
        "Нет доступа",
        "У вашей учётной записи нет прав на это действие. Если они нужны, обратитесь к администратору.",
    ),
    404: ("Не найдено", "Такой страницы нет."),
    405: (
        "Действие не выполнено",
        "Так эту страницу открыть нельзя. Вернитесь на предыдущую страницу и повторите действие.",
    ),
    413: (
        "Слишком большой объём",
        "Отправленный текст или файл слишком велик. Сократите его и отправьте снова.",
    ),
    429: ("Слишком много запросов", "Подождите немного и повторите действие."),
    500: (
        "Ошибка на сервере",
        "Действие не выполнено из-за ошибки на сервере. Попробуйте ещё раз; если ошибка повторится, "
        "сообщите администратору.",
    ),
}


class SessionInterface(SecureCookieSessionInterface):
    """The dashboard's cookie session, not opened for Twilio's webhooks (signed, no cookies)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith("/twilio/"):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        # A tab left open polls /live all day: that must not keep the session alive.
        if request.endpoint == "live.live":
            return session.modified
        return super().should_set_cookie(app, session)


def init_app(app: Flask) -> None:
    """Attach the dashboard to the application."""
    app.session_interface = SessionInterface()
    # CSRF is checked by our own hook rather than CSRFProtect's, so that the exempt
    # blueprints are known by name: it works whether the twilio blueprint is
    # registered before or after this and needs nothing from its author.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    csrf = CSRFProtect(app)

    @app.before_request
    def check_csrf() -> None:
        if CSRF_EXEMPT_BLUEPRINTS.isdisjoint(request.blueprints):
            csrf.protect(apply_exemptions=True)

    app.teardown_appcontext(close_session)
    app.after_request(security_headers)
    auth.init_app(app)
    formatting.init_app(app)
    app.jinja_env.globals["live_attributes"] = live.page_attributes
    for blueprint in (
        auth.bp,
        overview.bp,
        calls.bp,
        requests.bp,
        files.bp,
        users.bp,
        export.bp,
        live.bp,
    ):
        app.register_blueprint(blueprint)

    @app.errorhandler(CSRFError)
    def csrf_failed(exc: CSRFError) -> tuple[str, int]:
        return render_template(
            "error.html",
            title="Форма устарела",
            message="Страница была открыта слишком давно или без входа. Обновите её и повторите действие.",
        ), 400

    @app.errorhandler(HTTPException)  # also the 500 of an unexpected exception
    def http_error(exc: HTTPException) -> HTTPException | tuple[str, int]:
        code = exc.code or 500
        if _for_programs():
            return exc
        if code >= 500:
            # The failed view's session may need a rollback (a write that failed): the
            # page below reads the database through a fresh one.
            close_session(None)
        title, message = ERRORS.get(code) or ERRORS[500 if code >= 500 else 400]
        return render_template("error.html", title=title, message=message), code

    @app.errorhandler(DatabaseUnavailable)
    @app.errorhandler(OperationalError)
    def database_down(exc: Exception) -> tuple[str, int]:
        down = unavailable(exc) if isinstance(exc, OperationalError) else exc
        app.logger.error("%s %s: %s", request.method, request.path, down or exc)
        return render_template(
            "error.html", title="База данных недоступна", message="База данных недоступна, попробуйте позже."
        ), 503


def _for_programs() -> bool:
    """Twilio's webhooks, the health check and the pages' poll: their errors stay as Werkzeug writes them."""
    path = request.path
    return path.startswith("/twilio/") or path in ("/healthz", "/live") or path.endswith("/live")


def security_headers(response: Response) -> Response:
    """Headers that keep the dashboard out of frames and scripts out of its pages."""
    if request.blueprint in CSRF_EXEMPT_BLUEPRINTS:
        return response
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.endpoint != "static" and response.mimetype == "text/html":
        # Pages carry customers' data: no copies in shared caches or the back button after logout.
        response.headers.setdefault("Cache-Control", "no-store")
    return response
