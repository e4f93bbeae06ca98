"""Accounts: argon2 hashes, roles, lockout after failed logins, the `hotline user` commands."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_lockout_grows_and_a_success_resets_it(db):
    now = utcnow()
    with db.session() as s:
        user = users.create_user(s, "ivanov", password=PASSWORD)
        for _ in range(users.FREE_ATTEMPTS - 1):
            assert users.authenticate(s, "ivanov", "x", now=now) is None
            assert user.locked_until is None
        assert users.authenticate(s, "ivanov", "x", now=now) is None
        assert user.locked_until == now + users.FIRST_LOCK
        with pytest.raises(users.AccountLocked):
            users.authenticate(s, "ivanov", PASSWORD, now=now + dt.timedelta(seconds=10))
        later = now + users.FIRST_LOCK + dt.timedelta(seconds=1)
        assert users.authenticate(s, "ivanov", "x", now=later) is None
        assert user.locked_until == later + 2 * users.FIRST_LOCK  # doubled
        for _ in range(30):  # never beyond the cap, never an overflow
            user.locked_until = None
            users.authenticate(s, "ivanov", "x", now=later)
        assert user.locked_until == later + users.MAX_LOCK
        user.locked_until = None
        assert users.authenticate(s, "ivanov", PASSWORD, now=later) is user
        assert user.failed_logins == 0


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
