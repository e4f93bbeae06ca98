"""Failed logins counted where every worker sees them: the database, or Redis.

Three counters stand between a guesser and the password check (see docs/auth.md):

- the (login, address) pair: `PAIR.limit` tries, then a doubling lock of that pair only,
  so a stranger elsewhere cannot lock an engineer out, and the answer is the same
  whether or not the login exists;
- the address: `ADDRESS.limit` tries in a window, whatever the logins;
- the login from every address: beyond `LOGIN.limit` tries each answer is slowed down
  (never refused), which blunts guessing from many addresses.

Every attempt is counted *before* the password is checked, in one atomic step (a row
lock in the database, a Lua script in Redis), so concurrent attempts cannot slip past
the limit; a success then resets the pair and gives back its count to the others.

When Redis cannot be reached, each process counts in its own memory for a while
(`FallbackStore`, one warning in the log) rather than refusing every login; a lock
counted there holds until it expires, also after Redis is back. When Redis refuses our
password, logins are counted in memory too, but that is a configuration error: an
error line every RETRY_REDIS_SECONDS until it is fixed. The operator's commands (`hotline
user list`, `passwd`) never count in memory: they stop with LockStoreUnavailable.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hotline.errors import EX_CONFIG, Unavailable
from hotline.models import LoginAttempts, utcnow

log = logging.getLogger(__name__)


class LockStoreUnavailable(Unavailable):
    """The store of login locks (Redis) cannot be reached now (exit status 3)."""


class LockStoreMisconfigured(LockStoreUnavailable):
    """Redis refused our credentials (HOTLINE_QUEUE_URL): fixed by a person, not by time."""

    exit_status = EX_CONFIG


@dataclass(frozen=True)
class Policy:
    """How many tries under one key, and what happens after them."""

    name: str
    limit: int
    window: dt.timedelta
    first_lock: dt.timedelta = dt.timedelta(0)  # 0: count only, never lock
    max_lock: dt.timedelta = dt.timedelta(0)

    def lock_after(self, failures: int) -> dt.timedelta | None:
        """How long `failures` tries lock the key (doubling past the limit); None: not locked."""
        if not self.first_lock or failures < self.limit:
            return None
        return min(self.first_lock * 2 ** min(failures - self.limit, 16), self.max_lock)


PAIR = Policy("pair", 5, dt.timedelta(hours=24), dt.timedelta(seconds=30), dt.timedelta(minutes=15))
ADDRESS = Policy("address", 20, dt.timedelta(minutes=15), dt.timedelta(minutes=15), dt.timedelta(minutes=15))
LOGIN = Policy("login", 10, dt.timedelta(minutes=15))
SLOWDOWN_STEP = 0.5  # seconds added per try beyond LOGIN.limit …
SLOWDOWN_MAX = 3.0  # … up to this


@dataclass(frozen=True)
class Attempt:
    """One counted try: `wait` seconds left on a lock (0: go ahead), `failures` so far."""

    wait: float
    failures: int


class AttemptStore(Protocol):
    """Where the counts live (the database or Redis); every method is atomic."""

    def attempt(self, key: str, login: str | None, policy: Policy, now: dt.datetime) -> Attempt: ...

    def succeeded(self, key: str, policy: Policy) -> None: ...

    def clear_login(self, login: str) -> None: ...

    def locked_logins(self, now: dt.datetime) -> dict[str, dt.datetime]: ...


def pair_key(login: str, address: str) -> str:
    return f"pair:{login}|{address}"


def normal_login(login: str) -> str:
    return login.strip().lower()[:200]


def slowdown(failures: int) -> float:
    """Seconds to hold an answer for a login tried `failures` times from anywhere."""
    over = failures - LOGIN.limit
    return 0.0 if over <= 0 else min(SLOWDOWN_STEP * over, SLOWDOWN_MAX)


@dataclass(frozen=True)
class Verdict:
    """What the counters say about a login attempt, before the password is checked."""

    address_wait: float = 0.0  # the address is blocked
    pair_wait: float = 0.0  # this login from this address is locked
    delay: float = 0.0  # go ahead, but answer this much later

    @property
    def refused(self) -> bool:
        return bool(self.address_wait or self.pair_wait)


class Throttle:
    """The three counters of login attempts over one store."""

    def __init__(self, store: AttemptStore):
        self.store = store

    def before_check(self, login: str, address: str, now: dt.datetime | None = None) -> Verdict:
        """Count this try under the address, the pair and the login; refuse or slow it down."""
        now = now or utcnow()
        login = normal_login(login)
        by_address = self.store.attempt(f"address:{address}", None, ADDRESS, now)
        if by_address.wait:
            return Verdict(address_wait=by_address.wait)
        by_pair = self.store.attempt(pair_key(login, address), login, PAIR, now)
        if by_pair.wait:
            return Verdict(pair_wait=by_pair.wait)
        by_login = self.store.attempt(f"login:{login}", login, LOGIN, now)
        return Verdict(delay=slowdown(by_login.failures))

    def succeeded(self, login: str, address: str) -> None:
        """The password was right: forget the pair's failures, give back the others' count."""
        login = normal_login(login)
        self.store.succeeded(pair_key(login, address), PAIR)
        self.store.succeeded(f"address:{address}", ADDRESS)
        self.store.succeeded(f"login:{login}", LOGIN)


# --- in the database ---


class SqlAttemptStore:
    """Counts in the `login_attempts` table; a row lock (SQLite: the write lock) per step."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def _row(self, conn: Connection, key: str, login: str | None, now: dt.datetime) -> Iterator[Any]:
        dialect = conn.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        conn.execute(
            insert(LoginAttempts)
            .values(key=key, login=login, failures=0, window_started_at=now, updated_at=now)
            .on_conflict_do_nothing(index_elements=["key"])
        )
        yield conn.execute(select(LoginAttempts).where(LoginAttempts.key == key).with_for_update()).one()

    def attempt(self, key: str, login: str | None, policy: Policy, now: dt.datetime) -> Attempt:
        with self.engine.begin() as conn, self._row(conn, key, login, now) as row:
            if row.locked_until and row.locked_until > now:
                return Attempt((row.locked_until - now).total_seconds(), row.failures)
            failures, started = row.failures, row.window_started_at
            if started <= now - policy.window:
                failures, started = 0, now
            failures += 1
            lock = policy.lock_after(failures)
            conn.execute(
                update(LoginAttempts)
                .where(LoginAttempts.key == key)
                .values(
                    failures=failures,
                    window_started_at=started,
                    locked_until=now + lock if lock else None,
                    updated_at=now,
                )
            )
            if failures == 1 and started == now:
                # Forget keys nobody has tried for a day: guessed logins must not fill the table.
                conn.execute(
                    delete(LoginAttempts).where(
                        LoginAttempts.updated_at < now - dt.timedelta(days=1),
                        (LoginAttempts.locked_until.is_(None)) | (LoginAttempts.locked_until < now),
                    )
                )
            return Attempt(0.0, failures)

    def succeeded(self, key: str, policy: Policy) -> None:
        with self.engine.begin() as conn:
            if policy is PAIR:
                conn.execute(delete(LoginAttempts).where(LoginAttempts.key == key))
                return
            conn.execute(
                update(LoginAttempts)
                .where(LoginAttempts.key == key, LoginAttempts.failures > 0)
                .values(failures=LoginAttempts.failures - 1, locked_until=None)
            )

    def clear_login(self, login: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(LoginAttempts).where(LoginAttempts.login == normal_login(login)))

    def locked_logins(self, now: dt.datetime) -> dict[str, dt.datetime]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(LoginAttempts.login, func.max(LoginAttempts.locked_until))
                .where(LoginAttempts.key.startswith("pair:"), LoginAttempts.locked_until > now)
                .group_by(LoginAttempts.login)
            )
            out: dict[str, dt.datetime] = {}
            for login, until in rows:
                if login and until:
                    # SQLite returns max() of a datetime column as text.
                    moment = dt.datetime.fromisoformat(until) if isinstance(until, str) else until
                    out[login] = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
            return out


# --- in Redis ---

_ATTEMPT_LUA = """
local now = tonumber(ARGV[1])
local limit, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local first_lock, max_lock = tonumber(ARGV[4]), tonumber(ARGV[5])
local h = redis.call('HMGET', KEYS[1], 'failures', 'start', 'locked_until')
local failures, start, locked = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0
if locked > now then return {tostring(locked - now), failures} end
if start <= now - window then failures = 0; start = now end
failures = failures + 1
locked = 0
if first_lock > 0 and failures >= limit then
  locked = now + math.min(first_lock * 2 ^ math.min(failures - limit, 16), max_lock)
end
redis.call('HSET', KEYS[1], 'failures', failures, 'start', start, 'locked_until', locked)
redis.call('EXPIRE', KEYS[1], math.ceil(math.max(window, locked - now)) + 60)
if ARGV[6] ~= '' then
  redis.call('SADD', ARGV[7], KEYS[1])
  redis.call('EXPIRE', ARGV[7], math.ceil(math.max(window, max_lock)) + 60)
end
return {'0', failures}
"""


class RedisAttemptStore:
    """Counts in Redis hashes (HOTLINE_QUEUE_URL is redis): one Lua script per step."""

    def __init__(self, client: Any, prefix: str = "hotline:login-attempts:"):
        self.redis = client
        self.prefix = prefix
        self._attempt = client.register_script(_ATTEMPT_LUA)

    def _logins_key(self, login: str) -> str:
        return f"{self.prefix}of-login:{login}"

    def attempt(self, key: str, login: str | None, policy: Policy, now: dt.datetime) -> Attempt:
        wait, failures = self._attempt(
            keys=[self.prefix + key],
            args=[
                now.timestamp(),
                policy.limit,
                policy.window.total_seconds(),
                policy.first_lock.total_seconds(),
                policy.max_lock.total_seconds(),
                login if policy is PAIR and login else "",
                self._logins_key(login or ""),
            ],
        )
        return Attempt(float(wait), int(failures))

    def succeeded(self, key: str, policy: Policy) -> None:
        name = self.prefix + key
        if policy is PAIR:
            self.redis.delete(name)
            return
        if int(self.redis.hget(name, "failures") or 0) > 0:
            pipe = self.redis.pipeline()
            pipe.hincrby(name, "failures", -1)
            pipe.hset(name, "locked_until", 0)
            pipe.execute()

    def clear_login(self, login: str) -> None:
        login = normal_login(login)
        keys = list(self.redis.smembers(self._logins_key(login)))
        self.redis.delete(*keys, self._logins_key(login), f"{self.prefix}login:{login}")

    def locked_logins(self, now: dt.datetime) -> dict[str, dt.datetime]:
        out: dict[str, dt.datetime] = {}
        for name in self.redis.scan_iter(match=f"{self.prefix}pair:*", count=500):
            locked = float(self.redis.hget(name, "locked_until") or 0)
            if locked > now.timestamp():
                login = name.decode()[len(self.prefix) + len("pair:") :].rsplit("|", 1)[0]
                until = dt.datetime.fromtimestamp(math.floor(locked), dt.UTC)
                out[login] = max(out.get(login, until), until)
        return out


# --- in this process's memory (Redis unreachable) ---


#: The most keys the memory store holds; beyond it the least recently tried are dropped
#: (a spray of guessed logins from many addresses must not fill the process's memory).
MEMORY_MAX_KEYS = 10_000


@dataclass
class _Row:
    failures: int
    start: dt.datetime
    locked: dt.datetime | None
    login: str | None
    expires: dt.datetime  # both the window and the lock are over: the row says nothing more


class MemoryAttemptStore:
    """Counts in a dict of this process: what the Lua script does, under one lock.

    Keys are kept in the order they were last tried: expired ones are dropped from the
    front on every attempt, and the oldest beyond MEMORY_MAX_KEYS, so each attempt costs
    O(1) (amortized) and the memory is bounded.
    """

    def __init__(self, max_keys: int = MEMORY_MAX_KEYS) -> None:
        self._lock = threading.Lock()
        self._rows: OrderedDict[str, _Row] = OrderedDict()
        self._max_keys = max_keys

    def __len__(self) -> int:
        return len(self._rows)

    def attempt(self, key: str, login: str | None, policy: Policy, now: dt.datetime) -> Attempt:
        with self._lock:
            self._prune(now)
            row = self._rows.get(key)
            if row and row.locked and row.locked > now:
                return Attempt((row.locked - now).total_seconds(), row.failures)
            failures, start = (row.failures, row.start) if row else (0, now)
            if start <= now - policy.window:
                failures, start = 0, now
            failures += 1
            lock = policy.lock_after(failures)
            locked = now + lock if lock else None
            self._rows[key] = _Row(
                failures, start, locked, login, max(start + policy.window, locked or start)
            )
            self._rows.move_to_end(key)
            while len(self._rows) > self._max_keys:
                self._rows.popitem(last=False)
            return Attempt(0.0, failures)

    def lock_left(self, key: str, now: dt.datetime) -> Attempt | None:
        """The live lock of `key` counted here, if any (no try is counted)."""
        with self._lock:
            row = self._rows.get(key)
            if row and row.locked and row.locked > now:
                return Attempt((row.locked - now).total_seconds(), row.failures)
            return None

    def has_locks(self, now: dt.datetime) -> bool:
        """Whether any lock counted here still holds (after dropping what expired)."""
        with self._lock:
            self._prune(now)
            return any(row.locked and row.locked > now for row in self._rows.values())

    def _prune(self, now: dt.datetime) -> None:
        # The front is the least recently tried; a long-lived row there (a pair's day)
        # stops the pruning until the next attempt, and MEMORY_MAX_KEYS bounds the rest.
        while self._rows:
            row = next(iter(self._rows.values()))
            if row.expires > now:
                return
            self._rows.popitem(last=False)

    def succeeded(self, key: str, policy: Policy) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                return
            if policy is PAIR:
                del self._rows[key]
            elif row.failures > 0:
                row.failures -= 1
                row.locked = None

    def clear_login(self, login: str) -> None:
        login = normal_login(login)
        with self._lock:
            for key in [k for k, row in self._rows.items() if row.login == login]:
                del self._rows[key]

    def locked_logins(self, now: dt.datetime) -> dict[str, dt.datetime]:
        out: dict[str, dt.datetime] = {}
        with self._lock:
            for key, row in self._rows.items():
                if key.startswith("pair:") and row.login and row.locked and row.locked > now:
                    out[row.login] = max(out.get(row.login, row.locked), row.locked)
        return out


#: Seconds the memory store stands in before Redis is tried again.
RETRY_REDIS_SECONDS = 30.0


class FallbackStore:
    """Redis, and this process's memory while Redis cannot be reached.

    Logins must not fail because the queue's Redis is down: the counts then hold per
    process only (a guesser spread over N processes gets N times the tries) until Redis
    answers again; the log says so once per outage. A lock counted in memory meanwhile
    is still enforced after Redis is back, until it expires.

    Redis refusing our password (`refusals`) is a configuration error that time will not
    cure: logins are still counted in memory (refusing every login would lock out the
    engineers who must fix it), and an error line is logged every RETRY_REDIS_SECONDS
    until the password in HOTLINE_QUEUE_URL is right.

    With `fallback=False` (the operator's commands) nothing is counted in memory:
    LockStoreUnavailable (or LockStoreMisconfigured) says Redis did not answer.
    """

    def __init__(
        self,
        primary: AttemptStore,
        errors: tuple[type[BaseException], ...],
        where: str,
        *,
        refusals: tuple[type[BaseException], ...] = (),
        fallback: bool = True,
    ):
        self.primary = primary
        self.memory = MemoryAttemptStore()
        self._errors = errors + refusals
        self._refusals = refusals
        self._where = where
        self._fallback = fallback
        self._down_until = 0.0

    def _call(self, method: str, *args: Any) -> Any:
        if time.monotonic() >= self._down_until:
            try:
                result = getattr(self.primary, method)(*args)
            except self._errors as exc:
                self._failed(exc)
            else:
                if self._down_until:
                    log.warning("login throttle: Redis %s answers again; counting there", self._where)
                    self._down_until = 0.0
                return result
        return getattr(self.memory, method)(*args)

    def _failed(self, exc: BaseException) -> None:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        refused = isinstance(exc, self._refusals)
        if not self._fallback:
            if refused:
                raise LockStoreMisconfigured(
                    f"Redis {self._where} refused the credentials of HOTLINE_QUEUE_URL ({first}): "
                    "login locks not read or changed"
                ) from exc
            raise LockStoreUnavailable(
                f"the store of login locks, Redis {self._where}, is unreachable ({first}): "
                "login locks not read or changed"
            ) from exc
        if refused:  # every retry window: a password to fix, not an outage to wait out
            log.error(
                "login throttle: Redis %s refused the credentials (%s); check the password in "
                "HOTLINE_QUEUE_URL; counting login attempts in this process's memory meanwhile",
                self._where,
                first,
            )
        elif not self._down_until:
            log.warning(
                "login throttle: Redis %s unreachable (%s); counting login attempts "
                "in this process's memory until it answers",
                self._where,
                first,
            )
        self._down_until = time.monotonic() + RETRY_REDIS_SECONDS

    def attempt(self, key: str, login: str | None, policy: Policy, now: dt.datetime) -> Attempt:
        held = self.memory.lock_left(key, now)  # counted while Redis was away: still holds
        if held is not None:
            return held
        return self._call("attempt", key, login, policy, now)  # type: ignore[no-any-return]

    def succeeded(self, key: str, policy: Policy) -> None:
        self._call("succeeded", key, policy)
        if self._down_until == 0.0:  # a count kept in memory while Redis was away ends too
            self.memory.succeeded(key, policy)

    def clear_login(self, login: str) -> None:
        self.memory.clear_login(login)
        self._call("clear_login", login)

    def locked_logins(self, now: dt.datetime) -> dict[str, dt.datetime]:
        return {**self.memory.locked_logins(now), **self._call("locked_logins", now)}


#: Seconds a login waits for Redis before counting in memory (connect and each answer).
REDIS_TIMEOUT = 2.0


def make_store(engine: Engine, queue_url: str | None, *, fallback: bool = True) -> AttemptStore:
    """Redis when the queue is on Redis (shared by every host), the database otherwise.

    `fallback=False`: never count in this process's memory (the operator's commands,
    whose memory nobody else sees); LockStoreUnavailable when Redis does not answer."""
    if queue_url and queue_url.split(":", 1)[0] in {"redis", "rediss", "unix"}:
        import redis

        client = redis.Redis.from_url(
            queue_url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        # AuthenticationError is a ConnectionError: listed apart, it is told apart.
        refusals = (redis.AuthenticationError, redis.exceptions.NoPermissionError)
        errors = (redis.ConnectionError, redis.TimeoutError)
        return FallbackStore(
            RedisAttemptStore(client),
            errors,
            _redis_location(queue_url),
            refusals=refusals,
            fallback=fallback,
        )
    return SqlAttemptStore(engine)


def _redis_location(url: str) -> str:
    """Where Redis is, without a password: `redis-host:6379`."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
