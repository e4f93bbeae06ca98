"""Logging in and out; who is logged in; the guards every other blueprint puts on itself."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import (
    session as cookie,
)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from hotline import users
from hotline.db import DatabaseUnavailable
from hotline.models import Role, User
from hotline.users.throttle import ADDRESS, Throttle, make_store
from web.db import session

bp = Blueprint("auth", __name__)

LOGIN_MESSAGE = "Войдите, чтобы продолжить."
IP_FAILURES = ADDRESS.limit  # failed logins from one address, then that address waits
HSTS = "max-age=31536000"
#: How a slowed-down answer waits (tests watch it instead of waiting).
sleep = time.sleep


@dataclass(frozen=True)
class Engineer(UserMixin):
    """The logged-in person, as Flask-Login sees them (loaded fresh on every request)."""

    user_id: int
    login: str
    name: str
    role: str
    token: str  # of the row in user_sessions: logout or a new password deletes it

    def get_id(self) -> str:
        return self.token

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def actor(self) -> str:
        return f"engineer:{self.login}"

    @classmethod
    def of(cls, user: User, token: str) -> Engineer:
        return cls(user.id, user.login, user.name or user.login, user.role, token)


def init_app(app: Flask) -> None:
    manager = LoginManager(app)
    manager.login_view = "auth.login"
    manager.unauthorized_handler(_to_login)
    manager.session_protection = "basic"
    database = app.extensions["hotline.db"]
    app.extensions["hotline.throttle"] = Throttle(
        make_store(database.engine, app.extensions["hotline.settings"].queue_url)
    )

    @manager.user_loader
    def load_user(token: str) -> Engineer | None:
        try:
            db = session()
            user = users.session_user(db, token)
            # End the read: on SQLite every transaction holds the write lock, and the login
            # counters (and the CSV export) work in transactions of their own.
            db.commit()
        except (DatabaseUnavailable, OperationalError):
            # The 503 page asks who is logged in again: let it see nobody, not fail twice.
            g._login_user = manager.anonymous_user()
            raise
        return Engineer.of(user, token) if user is not None else None

    @app.context_processor
    def current_engineer() -> dict[str, object]:
        return {"me": current_user}

    if (app.extensions["hotline.settings"].public_url or "").startswith("https://"):

        @app.after_request
        def strict_transport(response: Response) -> Response:
            """Served over https: browsers must never come back over plain http."""
            response.headers.setdefault("Strict-Transport-Security", HSTS)
            return response


def _to_login() -> Response:
    """Off to the login page, and after it back to the page the engineer was on."""
    # Once, and only for a page the browser shows: a poll or a recording refused while
    # the engineer was away would each add one more copy.
    if _page_load() and LOGIN_MESSAGE not in (text for _, text in cookie.get("_flashes", [])):
        flash(LOGIN_MESSAGE, "info")
    return redirect(url_for("auth.login", next=_return_to()))


def _page_load() -> bool:
    """A page the browser shows, not a script's fetch or a recording's bytes."""
    mode = request.headers.get("Sec-Fetch-Mode")  # sent over https and to localhost
    if mode:
        return mode == "navigate"
    return any(kind == "text/html" for kind, _ in request.accept_mimetypes)


def _return_to() -> str:
    """This page, or for a form refused (say, its session ended) the page the form is on:
    a form's address cannot be opened with GET."""
    if request.method in ("GET", "HEAD"):
        return request.script_root + request.full_path.rstrip("?")
    referrer = urlsplit(request.referrer or "")
    page = urlunsplit(("", "", referrer.path, referrer.query, ""))
    if (referrer.scheme, referrer.netloc) == (request.scheme, request.host) and _safe_next(page) == page:
        return page
    # No referrer: the nearest address above the form's that a page answers.
    urls = current_app.url_map.bind(request.host)
    path = request.path
    while path.count("/") > 1:
        path = path.rsplit("/", 1)[0]
        try:
            urls.match(path, "GET")
        except HTTPException:
            continue
        return request.script_root + path
    return url_for("overview.index")


def require_login(blueprint: Blueprint) -> None:
    """Every view of `blueprint` needs a logged-in engineer."""

    @blueprint.before_request
    def guard() -> Response | None:
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined,no-any-return]
        return None


def require_admin(blueprint: Blueprint) -> None:
    """Every view of `blueprint` needs a logged-in admin."""
    require_login(blueprint)

    @blueprint.before_request
    def guard() -> None:
        if not current_user.is_admin:
            abort(403)


def me() -> Engineer:
    """The logged-in engineer (inside guarded blueprints)."""
    return current_user._get_current_object()  # type: ignore[no-any-return]


def _safe_next(target: str | None) -> str:
    # Only a path on this site: never follow ?next= to another host («//host», «/\\host» too).
    if target and target.startswith("/") and not target.startswith(("//", "/\\")) and target.isprintable():
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("overview.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    if request.method == "GET":
        current_app.extensions["hotline.db"].ping()  # no form to fill in while logging in cannot work
        return render_template("login.html")
    throttle: Throttle = current_app.extensions["hotline.throttle"]
    address = (request.remote_addr or "?")[:64]
    login_name = request.form.get("login", "").strip()[:200]
    # Counted before the password is checked; the answers below do not depend on
    # whether the login exists, nor does their timing.
    verdict = throttle.before_check(login_name, address)
    if verdict.address_wait:
        flash(
            "Слишком много неудачных попыток входа с этого адреса. "
            f"Повторите через {_minutes(verdict.address_wait)}.",
            "error",
        )
        return render_template("login.html", login=login_name), 429
    if verdict.pair_wait:
        flash(
            f"Слишком много неудачных попыток входа. Повторите через {_minutes(verdict.pair_wait)}.", "error"
        )
        return render_template("login.html", login=login_name), 429
    if verdict.delay:
        sleep(verdict.delay)
    db = session()
    user = users.authenticate(db, login_name, request.form.get("password", ""))
    if user is None:
        db.rollback()
        flash("Неверный логин или пароль.", "error")
        return render_template("login.html", login=login_name), 401
    token = users.start_session(db, user)
    db.commit()
    throttle.succeeded(login_name, address)
    # A new session cookie: nothing from before the login (the CSRF token included) carries over.
    cookie.clear()
    login_user(Engineer.of(user, token))
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/logout")
def logout() -> Response:
    if current_user.is_authenticated:
        db = session()
        users.end_session(db, me().token)
        db.commit()
    logout_user()
    cookie.clear()
    flash("Вы вышли.", "info")
    return redirect(url_for("auth.login"))


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, int(seconds + 0.999))} с"
    return f"{int(seconds // 60) + 1} мин"
