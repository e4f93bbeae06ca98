"""Counting failed logins where every worker sees them: the database (both) and Redis."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import types
import uuid

import pytest

from hotline.db import Database
from hotline.users import throttle
from hotline.users.throttle import ADDRESS, LOGIN, PAIR, SqlAttemptStore, Throttle
from tests.conftest import _reset_postgres
from tests.helpers import free_port


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "redis"])
def store(request):
    """The same contract on SQLite, PostgreSQL and Redis."""
    if request.param == "sqlite":
        yield SqlAttemptStore(request.getfixturevalue("db").engine)
        return
    if request.param == "postgres":
        url = request.getfixturevalue("_postgres_database")
        _reset_postgres(url)
        database = Database(url)
        yield SqlAttemptStore(database.engine)
        database.dispose()
        return
    import redis

    client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    prefix = f"hotline:test:{uuid.uuid4().hex}:"
    yield throttle.RedisAttemptStore(client, prefix=prefix)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def test_a_pair_locks_after_its_free_tries_and_the_lock_doubles(store):
    t = Throttle(store)
    for _ in range(PAIR.limit):
        assert not t.before_check("ivanov", "10.0.0.1", NOW).refused
    locked = t.before_check("ivanov", "10.0.0.1", NOW)
    assert locked.pair_wait == pytest.approx(PAIR.first_lock.total_seconds())
    # The same login from another address, and another login from this one, go ahead.
    assert not t.before_check("ivanov", "10.0.0.2", NOW).refused
    assert not t.before_check("petrov", "10.0.0.1", NOW).refused
    later = NOW + PAIR.first_lock + dt.timedelta(seconds=1)
    assert not t.before_check("ivanov", "10.0.0.1", later).refused  # one more try …
    again = t.before_check("IVANOV ", "10.0.0.1", later)  # … then twice as long
    assert again.pair_wait == pytest.approx(2 * PAIR.first_lock.total_seconds())
    assert store.locked_logins(later).keys() == {"ivanov"}


def test_a_success_resets_the_pair(store):
    t = Throttle(store)
    for _ in range(PAIR.limit - 1):
        t.before_check("ivanov", "10.0.0.1", NOW)
    t.succeeded("ivanov", "10.0.0.1")
    for _ in range(PAIR.limit):
        assert not t.before_check("ivanov", "10.0.0.1", NOW).refused


def test_an_address_is_blocked_after_many_logins_tried(store):
    t = Throttle(store)
    for i in range(ADDRESS.limit):
        assert not t.before_check(f"guess{i}", "10.0.0.9", NOW).refused
    blocked = t.before_check("ivanov", "10.0.0.9", NOW)
    assert blocked.address_wait > 0 and not blocked.pair_wait
    assert not t.before_check("ivanov", "10.0.0.10", NOW).refused
    assert not t.before_check("x", "10.0.0.9", NOW + ADDRESS.max_lock + dt.timedelta(seconds=1)).refused


def test_a_login_tried_from_many_addresses_is_slowed_never_locked(store):
    t = Throttle(store)
    delays = [t.before_check("ivanov", f"10.1.0.{i}", NOW).delay for i in range(LOGIN.limit + 10)]
    assert delays[: LOGIN.limit] == [0.0] * LOGIN.limit
    assert 0 < delays[LOGIN.limit] < delays[LOGIN.limit + 1] and max(delays) == throttle.SLOWDOWN_MAX
    assert not t.before_check("ivanov", "10.9.9.9", NOW).refused


def test_admin_clears_the_locks_of_a_login(store):
    t = Throttle(store)
    for _ in range(PAIR.limit + 1):
        t.before_check("ivanov", "10.0.0.1", NOW)
    assert t.before_check("ivanov", "10.0.0.1", NOW).pair_wait
    store.clear_login("ivanov")
    assert not t.before_check("ivanov", "10.0.0.1", NOW).refused
    assert store.locked_logins(NOW) == {}


def test_concurrent_tries_cannot_slip_past_the_limit(store):
    """Twenty threads at once: exactly PAIR.limit of them reach the password check."""
    t = Throttle(store)
    allowed: list[bool] = []
    start = threading.Barrier(20)

    def attempt() -> None:
        start.wait()
        allowed.append(not t.before_check("ivanov", "10.0.0.1", NOW).refused)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == PAIR.limit


def test_the_store_follows_the_queue(db, redis_url):
    assert isinstance(throttle.make_store(db.engine, None), SqlAttemptStore)
    on_redis = throttle.make_store(db.engine, redis_url)
    assert isinstance(on_redis, throttle.FallbackStore)
    assert isinstance(on_redis.primary, throttle.RedisAttemptStore)


def test_redis_unreachable_counts_in_memory_with_one_warning(db, caplog):
    # The queue's Redis is down: logins must still be counted (and go through), not fail.
    store = throttle.make_store(db.engine, f"redis://127.0.0.1:{free_port()}/0")
    t = Throttle(store)
    for _ in range(PAIR.limit):
        assert not t.before_check("ivanov", "10.0.0.1", NOW).refused
    assert t.before_check("ivanov", "10.0.0.1", NOW).pair_wait > 0  # the lock holds in memory
    assert store.locked_logins(NOW).keys() == {"ivanov"}
    store.clear_login("ivanov")
    assert not t.before_check("ivanov", "10.0.0.1", NOW).refused
    warnings = [r for r in caplog.records if r.name == "hotline.users.throttle"]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()


def test_the_memory_store_keeps_the_contract():
    t = Throttle(throttle.MemoryAttemptStore())
    for i in range(ADDRESS.limit):
        assert not t.before_check(f"guess{i}", "10.0.0.9", NOW).refused
    assert t.before_check("ivanov", "10.0.0.9", NOW).address_wait > 0
    for _ in range(PAIR.limit - 1):
        t.before_check("petrov", "10.0.0.1", NOW)
    t.succeeded("petrov", "10.0.0.1")
    for _ in range(PAIR.limit):
        assert not t.before_check("petrov", "10.0.0.1", NOW).refused


@pytest.fixture
def redis_client(redis_url):
    """The real Redis, with a prefix of this test's own (deleted after it)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = f"hotline:test:{uuid.uuid4().hex}:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)


def test_a_lock_counted_in_memory_holds_after_redis_is_back(db, redis_client, monkeypatch, caplog):
    client, prefix = redis_client
    monkeypatch.setattr(throttle, "RETRY_REDIS_SECONDS", 0.0)  # Redis is asked again at every call
    store = throttle.make_store(db.engine, f"redis://127.0.0.1:{free_port()}/0")
    assert isinstance(store, throttle.FallbackStore)
    t = Throttle(store)
    for _ in range(PAIR.limit):
        t.before_check("ivanov", "10.0.0.1", NOW)
    assert t.before_check("ivanov", "10.0.0.1", NOW).pair_wait > 0  # locked in memory, Redis down

    store.primary = throttle.RedisAttemptStore(client, prefix=prefix)  # Redis is back
    soon = NOW + dt.timedelta(seconds=10)
    assert t.before_check("ivanov", "10.0.0.1", soon).pair_wait == pytest.approx(20.0)  # the lock still holds
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert store.locked_logins(soon).keys() == {"ivanov"}
    assert not t.before_check("petrov", "10.0.0.1", soon).refused  # others are counted in Redis …
    assert client.exists(prefix + throttle.pair_key("petrov", "10.0.0.1"))
    after = NOW + PAIR.first_lock + dt.timedelta(seconds=1)
    assert not t.before_check("ivanov", "10.0.0.1", after).refused  # … and so is ivanov once it is over
    assert client.exists(prefix + throttle.pair_key("ivanov", "10.0.0.1"))


def test_redis_refusing_our_password_is_an_error_each_retry_and_logins_go_on(
    db, redis_url, monkeypatch, caplog
):
    host = redis_url.split("//", 1)[1]
    store = throttle.make_store(db.engine, f"redis://hotline:wrong-password@{host}")
    t = Throttle(store)
    assert not t.before_check("ivanov", "10.0.0.1", NOW).refused  # counted in memory: logins work
    assert not t.before_check("ivanov", "10.0.0.1", NOW).refused  # within the window: Redis not asked
    later = throttle.time.monotonic() + throttle.RETRY_REDIS_SECONDS + 1  # the next retry window
    monkeypatch.setattr(throttle, "time", types.SimpleNamespace(monotonic=lambda: later))
    for _ in range(PAIR.limit - 2):
        t.before_check("ivanov", "10.0.0.1", NOW)
    assert t.before_check("ivanov", "10.0.0.1", NOW).pair_wait > 0  # the memory's count went on
    errors = [r for r in caplog.records if r.name == "hotline.users.throttle"]
    assert len(errors) == 2 and all(r.levelname == "ERROR" for r in errors)  # one per retry window
    line = errors[0].getMessage()
    assert "HOTLINE_QUEUE_URL" in line and "refused the credentials" in line and "wrong-password" not in line


def test_the_memory_store_forgets_what_expired_and_stays_bounded():
    store = throttle.MemoryAttemptStore(max_keys=100)
    t = Throttle(store)
    for i in range(50):
        t.before_check("ivanov", f"10.2.0.{i}", NOW)  # 50 addresses, 50 pairs, one login
    assert len(store) == 100  # 101 keys: the least recently tried (the first address) went
    later = NOW + PAIR.window + dt.timedelta(seconds=1)  # every window is over
    t.before_check("petrov", "10.3.0.1", later)
    assert len(store) == 3  # what expired is gone; what this try counted is there
    for i in range(5000):  # a spray of guessed logins from many addresses
        t.before_check(f"guess{i}", f"10.4.{i // 250}.{i % 250}", later)
    assert len(store) == 100


def test_a_memory_lock_survives_a_spray_shorter_than_the_cap():
    store = throttle.MemoryAttemptStore(max_keys=1000)
    t = Throttle(store)
    for _ in range(PAIR.limit):
        t.before_check("ivanov", "10.0.0.1", NOW)
    for i in range(300):
        t.before_check(f"guess{i}", f"10.5.{i // 250}.{i % 250}", NOW)
    assert t.before_check("ivanov", "10.0.0.1", NOW).pair_wait > 0


HOTLINE = [sys.executable, "-c", "from hotline.cli import main; main()"]


def _hotline(tmp_path, queue_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env = {**clean, "HOTLINE_DATA_DIR": str(tmp_path / "data"), "HOTLINE_QUEUE_URL": queue_url}
    return subprocess.run(
        HOTLINE + list(args), input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def test_user_commands_say_the_lock_store_is_unreachable_instead_of_pretending(tmp_path, redis_url):
    down = f"redis://127.0.0.1:{free_port()}/0"
    added = _hotline(
        tmp_path, redis_url, "user", "add", "ivanov", "--password-stdin", stdin="пароль-ивана-1\n"
    )
    assert added.returncode == 0, added.stderr
    assert _hotline(tmp_path, redis_url, "user", "list").returncode == 0
    for args, stdin in (
        (("user", "list"), ""),
        (("user", "passwd", "ivanov", "--password-stdin"), "новый-пароль-ивана\n"),
    ):
        done = _hotline(tmp_path, down, *args, stdin=stdin)
        [line] = done.stderr.strip().splitlines()
        assert done.returncode == 3 and "unreachable" in line and "Redis" in line, done.stderr
    assert "ivanov" not in _hotline(tmp_path, down, "user", "list").stdout  # no list of made-up states
