"""Logins against `hotline serve --workers 2` started for real: limits shared by the workers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from hotline import users
from hotline.db import Database
from hotline.users.throttle import PAIR
from tests.helpers import hotline_serve

pytestmark = pytest.mark.slow

PASSWORD = "верный-пароль-инженера"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Base URL of `hotline serve --workers 2 --threads 2` on SQLite, with two engineers."""
    # The accounts are made in-process (cheap argon2 parameters: the server reads them
    # from each hash), the schema by the same migrations the server would run.
    monkeypatch.setattr(users, "hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    database = Database(f"sqlite:///{tmp_path / 'data' / 'hotline.sqlite3'}")
    database.upgrade()
    with database.session() as s:
        for login in ["ivanov", "petrov"]:
            users.create_user(s, login, password=PASSWORD)
    database.dispose()
    with hotline_serve(
        tmp_path / "data", "--workers", "2", "--threads", "2", HOTLINE_SECRET_KEY="serve-auth-test-secret"
    ) as base:
        yield base


def _browser(base: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    html = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    return client, token.group(1)


def _login(base: str, login: str, password: str) -> int:
    """One browser's try at logging in: the answer's status."""
    client, token = _browser(base)
    try:
        response = client.post("/login", data={"login": login, "password": password, "csrf_token": token})
        return response.status_code
    finally:
        client.close()


def test_concurrent_guesses_across_two_workers_get_exactly_the_free_tries(server):
    # 16 tries in all from this address: below the address's own limit of 20.
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: _login(server, "ivanov", "угадываю-пароль"), range(8)))
    assert sorted(statuses) == [401] * PAIR.limit + [429] * (8 - PAIR.limit)
    # Locked for this address whichever worker answers, even with the right password …
    assert {_login(server, "ivanov", PASSWORD) for _ in range(2)} == {429}
    # … and an unknown login is locked after as many tries, with the same answers.
    unknown = [_login(server, "nobody", "угадываю-пароль") for _ in range(PAIR.limit + 1)]
    assert unknown == [401] * PAIR.limit + [429]


def test_logout_ends_the_session_in_every_worker(server):
    browser, token = _browser(server)
    thief = httpx.Client(base_url=server, follow_redirects=False, timeout=30)
    try:
        logged_in = browser.post(
            "/login", data={"login": "petrov", "password": PASSWORD, "csrf_token": token}
        )
        assert logged_in.status_code == 302
        thief.cookies.set("hotline_session", browser.cookies["hotline_session"], domain="127.0.0.1")
        assert {thief.get("/requests").status_code for _ in range(4)} == {200}
        page_token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/").text)
        assert page_token
        assert browser.post("/logout", data={"csrf_token": page_token.group(1)}).status_code == 302
        answers = [thief.get("/requests") for _ in range(4)]
        assert {r.status_code for r in answers} == {302}
        assert all(r.headers["Location"].startswith("/login") for r in answers)
    finally:
        browser.close()
        thief.close()
