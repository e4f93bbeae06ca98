"""Accounts: argon2 hashes, password strength, sessions, roles, the `hotline user` commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from hotline import users
from hotline.errors import NotFound, UserError
from hotline.models import utcnow

PASSWORD = "правильный-пароль"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its cheapest in-process; the command-line test below runs the real parameters."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(users, "hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.setattr(users, "_DUMMY_HASH", None)


def test_passwords_are_argon2_hashes(db):
    with db.session() as s:
        user = users.create_user(s, "Ivanov", password=PASSWORD, name="Иван")
        assert user.login == "ivanov" and user.role == "engineer"
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        assert users.authenticate(s, "IVANOV", PASSWORD) is user
        assert user.last_login_at is not None
        assert users.authenticate(s, "ivanov", "неправильный") is None


@pytest.mark.parametrize(
    ("login", "password", "message"),
    [
        ("ivanov", "short", "не короче"),
        ("ivanov", " с пробелом в начале", "пробелом"),
        ("иванов", PASSWORD, "логин"),
        ("a", PASSWORD, "логин"),
        ("../x", PASSWORD, "логин"),
    ],
)
def test_bad_accounts_are_refused(db, login, password, message):
    with db.session() as s, pytest.raises(UserError, match=message):
        users.create_user(s, login, password=password)


def test_duplicate_login_and_unknown_role(db):
    with db.session() as s:
        users.create_user(s, "ivanov", password=PASSWORD)
        with pytest.raises(UserError, match="уже есть"):
            users.create_user(s, "IVANOV", password=PASSWORD)
        with pytest.raises(UserError, match="unknown role"):
            users.create_user(s, "petrov", password=PASSWORD, role="root")
        with pytest.raises(NotFound):
            users.get_user(s, "nobody")


@pytest.mark.parametrize(
    "password",
    ["1234567890", "password12", "qwertyuiop", "йцукенгшщз", "пароль12345", "ivanov12345", "Иванов-2024"],
)
def test_guessable_passwords_are_refused_in_russian(db, password):
    with db.session() as s, pytest.raises(UserError, match="слишком простой"):
        users.create_user(s, "ivanov", password=password, name="Иван Иванов")


def test_sessions_end_on_logout_new_password_and_disabling(db):
    now = utcnow()
    with db.session() as s:
        users.create_user(s, "boss", password=PASSWORD, role="admin")
        user = users.create_user(s, "ivanov", password=PASSWORD)
        first, second = users.start_session(s, user, now), users.start_session(s, user, now)
        assert first != second and first not in str(s.execute(text("SELECT id FROM user_sessions")).all())
        assert users.session_user(s, first, now) is user
        users.end_session(s, first)
        assert users.session_user(s, first, now) is None
        assert users.session_user(s, second, now) is user  # the other browser stays in
        assert users.session_user(s, second, now + users.SESSION_LIFETIME) is None  # expired
        users.set_password(user, "совсем-другой-пароль")
        s.flush()
        assert users.session_user(s, second, now) is None
        third = users.start_session(s, user, now)
        users.set_active(s, user, False)
        s.flush()
        assert users.session_user(s, third, now) is None and users.open_sessions(s, user.id, now) == 0
        assert users.session_user(s, "", now) is None and users.session_user(s, "x" * 500, now) is None


def test_disabled_accounts_cannot_log_in(db):
    with db.session() as s:
        users.create_user(s, "boss", password=PASSWORD, role="admin")
        user = users.create_user(s, "ivanov", password=PASSWORD)
        users.set_active(s, user, False)
        assert users.authenticate(s, "ivanov", PASSWORD) is None


def test_there_is_always_an_admin(db):
    with db.session() as s:
        boss = users.create_user(s, "boss", password=PASSWORD, role="admin")
        with pytest.raises(UserError, match="последний администратор"):
            users.set_role(s, boss, "engineer")
        with pytest.raises(UserError, match="последний администратор"):
            users.set_active(s, boss, False)
        users.create_user(s, "deputy", password=PASSWORD, role="admin")
        users.set_role(s, boss, "engineer")
        assert boss.role == "engineer"


def test_old_hashes_are_upgraded_on_login(db, monkeypatch):
    from argon2 import PasswordHasher

    with db.session() as s:
        user = users.create_user(s, "ivanov", password=PASSWORD)
        old = user.password_hash
        monkeypatch.setattr(users, "hasher", PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
        assert users.authenticate(s, "ivanov", PASSWORD) is user
        assert user.password_hash != old and "t=2" in user.password_hash


HOTLINE = [sys.executable, "-c", "from hotline.cli import main; main()"]


def _run(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env = {**clean, "HOTLINE_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run(
        HOTLINE + list(args), input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def test_user_commands(tmp_path):
    added = _run(
        tmp_path,
        "user",
        "add",
        "admin",
        "--name",
        "Анна",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert "created admin (admin)" in added.stdout
    # The prompt asks twice and reads from the terminal (here: stdin).
    prompted = _run(tmp_path, "user", "add", "ivanov", stdin="пароль-ивана-1\nпароль-ивана-1\n")
    assert prompted.returncode == 0, prompted.stderr
    listed = _run(tmp_path, "user", "list")
    assert "admin\tadmin\tactive\t-\tАнна" in listed.stdout and "ivanov\tengineer" in listed.stdout
    weak = _run(tmp_path, "user", "add", "petrov", "--password-stdin", stdin="123\n")
    assert (
        weak.returncode == 1
        and weak.stderr.strip().startswith("error: ")
        and len(weak.stderr.strip().splitlines()) == 1
    )
    dup = _run(tmp_path, "user", "add", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert dup.returncode == 1 and "уже есть" in dup.stderr
    changed = _run(tmp_path, "user", "passwd", "ivanov", "--password-stdin", stdin="новый-пароль-ивана\n")
    assert changed.returncode == 0 and "password of ivanov changed" in changed.stdout
    missing = _run(tmp_path, "user", "passwd", "nobody", "--password-stdin", stdin="новый-пароль-ивана\n")
    assert missing.returncode == 1 and "не найден" in missing.stderr
    # No way to put a password on the command line.
    assert _run(tmp_path, "user", "add", "x", "--password", "секрет-секрет").returncode != 0
