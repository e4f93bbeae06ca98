"""Logging in and out; who is logged in; the guards every other blueprint puts on itself."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

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
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from sqlalchemy.exc import OperationalError
from werkzeug.wrappers import Response

from hotline import users
from hotline.db import DatabaseUnavailable
from hotline.models import Role, User, utcnow
from web.db import session

bp = Blueprint("auth", __name__)

IP_FAILURES = 20  # failed logins from one address …
IP_WINDOW = 15 * 60  # … within this many seconds, then that address waits


@dataclass(frozen=True)
class Engineer(UserMixin):
    """The logged-in person, as Flask-Login sees them (loaded fresh on every request)."""

    user_id: int
    login: str
    name: str
    role: str
    session_tag: str

    def get_id(self) -> str:
        # The tag changes with the password, which ends every other session.
        return f"{self.user_id}.{self.session_tag}"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def actor(self) -> str:
        return f"engineer:{self.login}"

    @classmethod
    def of(cls, user: User) -> Engineer:
        return cls(user.id, user.login, user.name or user.login, user.role, user.password_hash[-12:])


class FailedLogins:
    """Failed logins per client address in a sliding window (per process)."""

    def __init__(self, limit: int = IP_FAILURES, window: float = IP_WINDOW):
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._seen.setdefault(address, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked_for(self, address: str) -> float:
        """Seconds this address must wait before trying again (0: go ahead)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.limit:
                return 0.0
            return times[0] + self.window - now

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(address, now).append(now)
            if len(self._seen) > 10000:  # forget quiet addresses rather than grow forever
                for key in [k for k, v in self._seen.items() if not v]:
                    del self._seen[key]


def init_app(app: Flask) -> None:
    manager = LoginManager(app)
    manager.login_view = "auth.login"
    manager.login_message = "Войдите, чтобы продолжить."
    manager.login_message_category = "info"
    manager.session_protection = "basic"
    app.extensions["hotline.failed_logins"] = FailedLogins()

    @manager.user_loader
    def load_user(user_id: str) -> Engineer | None:
        ident, _, tag = user_id.partition(".")
        if not ident.isdigit():
            return None
        try:
            user = session().get(User, int(ident))
        except (DatabaseUnavailable, OperationalError):
            # The 503 page asks who is logged in again: let it see nobody, not fail twice.
            g._login_user = manager.anonymous_user()
            raise
        if user is None or not user.active or user.password_hash[-12:] != tag:
            return None
        return Engineer.of(user)

    @app.context_processor
    def current_engineer() -> dict[str, object]:
        return {"me": current_user}


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
    # Only a path on this site: never follow ?next= to another host.
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("overview.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    if request.method == "GET":
        current_app.extensions["hotline.db"].ping()  # no form to fill in while logging in cannot work
        return render_template("login.html")
    throttle: FailedLogins = current_app.extensions["hotline.failed_logins"]
    address = request.remote_addr or "?"
    login_name = request.form.get("login", "").strip()
    if wait := throttle.blocked_for(address):
        flash(f"Слишком много неудачных попыток с этого адреса. Повторите через {_minutes(wait)}.", "error")
        return render_template("login.html", login=login_name), 429
    db = session()
    try:
        user = users.authenticate(db, login_name, request.form.get("password", ""))
    except users.AccountLocked as exc:
        wait = (exc.until - utcnow()).total_seconds()
        flash(
            "Учётная запись временно заблокирована после неудачных попыток. "
            f"Повторите через {_minutes(wait)}.",
            "error",
        )
        return render_template("login.html", login=login_name), 429
    db.commit()  # the failure count, or the successful login
    if user is None:
        throttle.failed(address)
        flash("Неверный логин или пароль.", "error")
        return render_template("login.html", login=login_name), 401
    login_user(Engineer.of(user))
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/logout")
def logout() -> Response:
    logout_user()
    flash("Вы вышли.", "info")
    return redirect(url_for("auth.login"))


def _minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, int(seconds + 0.999))} с"
    return f"{int(seconds // 60) + 1} мин"
