"""Accounts of the support team, managed by admins."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from hotline import users
from hotline.errors import UserError
from hotline.models import User, utcnow
from hotline.users.throttle import Throttle
from web.auth import me, require_admin
from web.db import session

bp = Blueprint("users", __name__, url_prefix="/users")
require_admin(bp)


def _throttle() -> Throttle:
    return current_app.extensions["hotline.throttle"]  # type: ignore[no-any-return]


def _page(**extra: object) -> str:
    # The counters first: on SQLite the request's session holds the write lock once it reads.
    locked = _throttle().store.locked_logins(utcnow())
    return render_template("users.html", users=users.list_users(session()), locked=locked, **extra)


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
    try:
        if "role" in form:
            users.set_role(db, user, form["role"])
        if "active" in form:
            if user.id == me().user_id and form["active"] != "1":
                raise UserError("нельзя отключить собственную учётную запись")
            users.set_active(db, user, form["active"] == "1")
        if form.get("password"):
            users.set_password(user, form["password"])
    except UserError as exc:
        db.rollback()
        flash(f"{user.login}: {exc}.", "error")
        return redirect(url_for(".index"))
    db.commit()
    if form.get("unlock") or form.get("password"):
        _throttle().store.clear_login(user.login)
    flash(f"Пользователь {user.login} изменён.", "ok")
    return redirect(url_for(".index"))
