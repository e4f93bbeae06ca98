"""The support team's accounts: engineers and admins, argon2 password hashes, lockout.

A wrong password counts against the account; after `FREE_ATTEMPTS` failures in a row
each further failure locks the account for a doubling time (capped), so guessing a
password by trying is slowed to a crawl while a person who mistyped waits seconds.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hotline.errors import NotFound, UserError
from hotline.models import Role, User, utcnow

FREE_ATTEMPTS = 5
FIRST_LOCK = dt.timedelta(seconds=30)
MAX_LOCK = dt.timedelta(minutes=15)
MIN_PASSWORD = 10
_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")

ROLE_LABELS = {Role.ENGINEER: "инженер", Role.ADMIN: "администратор"}

#: argon2id with the library's defaults (RFC 9106 low-memory profile); tests swap in
#: a cheaper hasher, and check_needs_rehash upgrades old hashes on the next login.
hasher = PasswordHasher()
# Verified when the login is unknown, so that an unknown login takes as long as a known one.
_DUMMY_HASH: str | None = None


class AccountLocked(UserError):
    """Too many failed logins: the account is locked until `until`."""

    def __init__(self, until: dt.datetime):
        super().__init__("слишком много неудачных попыток входа")
        self.until = until


def parse_role(text: str) -> Role:
    """A role from its code ('engineer', 'admin')."""
    try:
        return Role(text)
    except ValueError:
        raise UserError(f"unknown role {text!r}; choose engineer or admin") from None


def check_password_strength(password: str) -> None:
    """Refuse passwords too short to resist guessing (the message is shown to people)."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"пароль должен быть не короче {MIN_PASSWORD} символов")
    if password.strip() != password:
        raise UserError("пароль не должен начинаться или заканчиваться пробелом")


def create_user(
    session: Session, login: str, *, password: str, name: str = "", role: str = "engineer"
) -> User:
    """A new account; UserError if the login is taken or malformed or the password weak."""
    login = login.strip().lower()
    if not _LOGIN.match(login):
        raise UserError("логин: латинские буквы, цифры, точка, дефис или подчёркивание (2–80 символов)")
    if session.scalar(select(User.id).where(User.login == login)) is not None:
        raise UserError(f"пользователь {login} уже есть")
    check_password_strength(password)
    user = User(
        login=login,
        name=name.strip(),
        role=parse_role(role),
        password_hash=hasher.hash(password),
        active=True,
        failed_logins=0,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, login: str) -> User:
    """The account with this login; NotFound otherwise."""
    user = session.scalars(select(User).where(User.login == login.strip().lower())).one_or_none()
    if user is None:
        raise NotFound(f"пользователь {login} не найден")
    return user


def list_users(session: Session) -> Sequence[User]:
    """Every account, by login."""
    return session.scalars(select(User).order_by(User.login)).all()


def set_password(user: User, password: str) -> None:
    """Give the account a new password and lift any lock."""
    check_password_strength(password)
    user.password_hash = hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None


def set_role(session: Session, user: User, role: str) -> None:
    """Change the role; the last active admin cannot stop being one."""
    new_role = parse_role(role)
    if user.role == Role.ADMIN and new_role != Role.ADMIN:
        _keep_an_admin(session, user)
    user.role = new_role


def set_active(session: Session, user: User, active: bool) -> None:
    """Enable or disable an account; the last active admin stays enabled."""
    if not active and user.role == Role.ADMIN:
        _keep_an_admin(session, user)
    user.active = active


def _keep_an_admin(session: Session, user: User) -> None:
    others = session.scalar(
        select(func.count(User.id)).where(User.role == Role.ADMIN, User.active.is_(True), User.id != user.id)
    )
    if not others:
        raise UserError("это последний администратор: назначьте сначала другого")


def lock_remaining(user: User, now: dt.datetime | None = None) -> dt.timedelta | None:
    """How long the account stays locked, None if it is not."""
    now = now or utcnow()
    if user.locked_until and user.locked_until > now:
        return user.locked_until - now
    return None


def authenticate(session: Session, login: str, password: str, now: dt.datetime | None = None) -> User | None:
    """The account if the password is right; None if not; AccountLocked while locked.

    Failures are counted on the account (the caller commits them even when the login
    fails); a success resets the count.
    """
    global _DUMMY_HASH
    now = now or utcnow()
    user = session.scalars(select(User).where(User.login == login.strip().lower())).one_or_none()
    if user is None or not user.active:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hasher.hash("not a password of anybody")
        _verify(_DUMMY_HASH, password)
        return None
    if (until := user.locked_until) and until > now:
        raise AccountLocked(until)
    if not _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= FREE_ATTEMPTS:
            lock = min(FIRST_LOCK * 2 ** min(user.failed_logins - FREE_ATTEMPTS, 10), MAX_LOCK)
            user.locked_until = now + lock
        return None
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
