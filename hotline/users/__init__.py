"""The support team's accounts: engineers and admins, argon2 password hashes, sessions.

Failed logins are not counted on the account (a stranger could then lock an engineer
out) but per (login, address) in `hotline.users.throttle`. A logged-in browser is a
row of `user_sessions` (the cookie holds a random token, the table its SHA-256):
logging out deletes the row, a new password or a disabled account deletes them all,
so a copied cookie stops working at once. Passwords are judged by `zxcvbn`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, object_session
from zxcvbn import zxcvbn

from hotline.errors import NotFound, UserError
from hotline.models import Role, User, UserSession, utcnow

MIN_PASSWORD = 10
MIN_SCORE = 3  # zxcvbn's 0–4: 3 is "safely unguessable" against an online attack
SESSION_LIFETIME = dt.timedelta(hours=12)
_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,79}$")

ROLE_LABELS = {Role.ENGINEER: "инженер", Role.ADMIN: "администратор"}

#: argon2id with the library's defaults (RFC 9106 low-memory profile); tests swap in
#: a cheaper hasher, and check_needs_rehash upgrades old hashes on the next login.
hasher = PasswordHasher()
# Verified when the login is unknown, so that an unknown login takes as long as a known one.
_DUMMY_HASH: str | None = None


def parse_role(text: str) -> Role:
    """A role from its code ('engineer', 'admin')."""
    try:
        return Role(text)
    except ValueError:
        raise UserError(f"unknown role {text!r}; choose engineer or admin") from None


# The Russian keyboard typed as if it were the Latin one: «йцукен» is «qwerty» to a guesser.
_RU_KEYS = "ёйцукенгшщзхъфывапролджэячсмитьбю"
_EN_KEYS = "`qwertyuiop[]asdfghjkl;'zxcvbnm,."
_LAYOUT = str.maketrans(_RU_KEYS + _RU_KEYS.upper(), _EN_KEYS + _EN_KEYS.upper())
#: Words every guesser tries first that zxcvbn's English lists do not hold.
_COMMON_RU = ["пароль", "gfhjkm", "qwerty", "йцукен", "админ", "инженер", "поддержка", "hotline", "псрqr"]


def check_password_strength(password: str, *, user_inputs: Sequence[str] = ()) -> None:
    """Refuse passwords a guesser would find (zxcvbn; the message is shown to people)."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"пароль должен быть не короче {MIN_PASSWORD} символов")
    if password.strip() != password:
        raise UserError("пароль не должен начинаться или заканчиваться пробелом")
    inputs = [*(i for i in user_inputs if i), *_COMMON_RU]
    score = min(
        zxcvbn(candidate[:100], user_inputs=inputs)["score"]
        for candidate in {password, password.translate(_LAYOUT)}
    )
    if score < MIN_SCORE:
        raise UserError(
            "пароль слишком простой, его легко подобрать: не берите распространённые пароли, "
            "ряды клавиш, даты и своё имя; возьмите три-четыре несвязанных слова"
        )


def create_user(
    session: Session, login: str, *, password: str, name: str = "", role: str = "engineer"
) -> User:
    """A new account; UserError if the login is taken or malformed or the password weak."""
    login = login.strip().lower()
    if not _LOGIN.match(login):
        raise UserError("логин: латинские буквы, цифры, точка, дефис или подчёркивание (2–80 символов)")
    if session.scalar(select(User.id).where(User.login == login)) is not None:
        raise UserError(f"пользователь {login} уже есть")
    check_password_strength(password, user_inputs=[login, *name.split()])
    user = User(
        login=login,
        name=name.strip(),
        role=parse_role(role),
        password_hash=hasher.hash(password),
        active=True,
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
    """Give the account a new password; every session of the account ends."""
    check_password_strength(password, user_inputs=[user.login, *user.name.split()])
    user.password_hash = hasher.hash(password)
    end_all_sessions(user)


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
    if not active:
        end_all_sessions(user)


def _keep_an_admin(session: Session, user: User) -> None:
    others = session.scalar(
        select(func.count(User.id)).where(User.role == Role.ADMIN, User.active.is_(True), User.id != user.id)
    )
    if not others:
        raise UserError("это последний администратор: назначьте сначала другого")


def authenticate(session: Session, login: str, password: str, now: dt.datetime | None = None) -> User | None:
    """The account if the password is right, None if not (or unknown, or disabled).

    An unknown or disabled login costs one hash check like a known one, so the time
    of the answer does not tell which logins exist.
    """
    global _DUMMY_HASH
    now = now or utcnow()
    user = session.scalars(select(User).where(User.login == login.strip().lower())).one_or_none()
    if user is None or not user.active:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hasher.hash("not a password of anybody")
        _verify(_DUMMY_HASH, password)
        return None
    if not _verify(user.password_hash, password):
        return None
    user.last_login_at = now
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return user


def _verify(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# --- sessions ---


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: User, now: dt.datetime | None = None) -> str:
    """A new logged-in session of `user`: the token for the cookie (only its hash is stored)."""
    now = now or utcnow()
    session.execute(delete(UserSession).where(UserSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(
        UserSession(id=_token_id(token), user_id=user.id, created_at=now, expires_at=now + SESSION_LIFETIME)
    )
    session.flush()
    return token


def session_user(session: Session, token: str, now: dt.datetime | None = None) -> User | None:
    """The active account whose unexpired session this token is; None otherwise."""
    if not token or len(token) > 200:
        return None
    now = now or utcnow()
    return session.scalars(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.id == _token_id(token), UserSession.expires_at > now, User.active.is_(True))
    ).one_or_none()


def end_session(session: Session, token: str) -> None:
    """Log this session out (its cookie no longer works anywhere)."""
    session.execute(delete(UserSession).where(UserSession.id == _token_id(token)))


def end_all_sessions(user: User) -> None:
    """Log the account out everywhere (a new password, a disabled account)."""
    session = object_session(user)
    if session is not None and user.id is not None:
        session.execute(delete(UserSession).where(UserSession.user_id == user.id))


def open_sessions(session: Session, user_id: int, now: dt.datetime | None = None) -> int:
    """How many unexpired sessions the account has."""
    now = now or utcnow()
    return (
        session.scalar(
            select(func.count())
            .select_from(UserSession)
            .where(UserSession.user_id == user_id, UserSession.expires_at > now)
        )
        or 0
    )
