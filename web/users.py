"""Accounts of the support team, managed by admins."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from hotline import users
from hotline.errors import UserError
from hotline.models import Role, User, utcnow
from hotline.users import ROLE_LABELS
from hotline.users.throttle import Throttle
from hotline.vocabulary import MONTHS_GENITIVE
from web.auth import me, require_admin
from web.db import session, settings

bp = Blueprint("users", __name__, url_prefix="/users")
require_admin(bp)


def _throttle() -> Throttle:
    return current_app.extensions["hotline.throttle"]  # type: ignore[no-any-return]


def _page(**extra: object) -> str:
    # The counters first: on SQLite the request's session holds the write lock once it reads.
    now = utcnow()
    locked = {login: _until(moment, now) for login, moment in _throttle().store.locked_logins(now).items()}
    return render_template("users.html", users=users.list_users(session()), locked=locked, **extra)


def _until(moment: dt.datetime, now: dt.datetime) -> str:
    """The plant's time a lock ends: «00:15», or «8 декабря, 00:00» when not today."""
    zone = settings().business_hours.timezone
    local = moment.astimezone(zone)
    if local.date() == now.astimezone(zone).date():
        return f"{local:%H:%M}"
    return f"{local.day} {MONTHS_GENITIVE[local.month - 1]}, {local:%H:%M}"


@bp.get("")
def index() -> str:
    return _page()


@bp.post("")
def create() -> Response | tuple[str, int]:
    db = session()
    form = request.form
    try:
        user = users.create_user(
            db,
            form.get("login", ""),
            password=form.get("password", ""),
            name=form.get("name", ""),
            role=form.get("role", "engineer"),
        )
    except UserError as exc:
        db.rollback()
        flash(f"Не удалось создать пользователя: {exc}.", "error")
        return _page(form=form), 400
    db.commit()
    flash(f"Пользователь {user.login} создан.", "ok")
    return redirect(url_for(".index"))


@bp.post("/<int:user_id>")
def update(user_id: int) -> Response:
    db = session()
    user = db.get(User, user_id)
    if user is None:
        abort(404)
    form = request.form
    done = []
    try:
        if "role" in form:
            users.set_role(db, user, form["role"])
            done.append(f"Пользователь {user.login} теперь {ROLE_LABELS[Role(user.role)]}.")
        if "active" in form:
            if user.id == me().user_id and form["active"] != "1":
                raise UserError("нельзя отключить собственную учётную запись")
            users.set_active(db, user, form["active"] == "1")
            done.append(
                f"Учётная запись {user.login} включена."
                if user.active
                else f"Учётная запись {user.login} отключена, её открытые сеансы завершены."
            )
        if form.get("password"):
            users.set_password(user, form["password"])
            done.append(f"Пароль пользователя {user.login} сменён, его открытые сеансы завершены.")
    except UserError as exc:
        db.rollback()
        flash(f"{user.login}: {exc}.", "error")
        return redirect(url_for(".index"))
    db.commit()
    if form.get("unlock") or form.get("password"):
        _throttle().store.clear_login(user.login)
    if form.get("unlock"):
        done.append(f"Вход для {user.login} разблокирован.")
    flash(" ".join(done) or "Ничего не изменилось.", "ok")
    return redirect(url_for(".index"))
