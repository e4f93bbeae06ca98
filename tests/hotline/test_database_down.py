"""The database going away and coming back, through a proxy in front of real PostgreSQL."""

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from hotline import registry
from hotline.db import Database, DatabaseUnavailable
from hotline.models import Request
from tests.conftest import missing_service
from tests.dbproxy import DbProxy

pytestmark = pytest.mark.postgres
HOTLINE = [sys.executable, "-c", "from hotline.cli import main; main()"]


def test_unavailable_while_cut_and_usable_again_after_restore(pg_via_proxy):
    db = Database(pg_via_proxy.url)
    try:
        with db.session() as s:  # a pooled connection that the cut will kill
            assert s.execute(text("SELECT 1")).scalar() == 1
        pg_via_proxy.cut()
        with pytest.raises(DatabaseUnavailable, match="database unavailable"), db.session() as s:
            s.execute(text("SELECT 1"))
        pg_via_proxy.restore()
        with db.session() as s:
            registry.open_request(s, kind="incident", channel="phone", actor="cli", subject="после сбоя")
        with db.session() as s:
            assert s.scalars(select(Request.subject)).one() == "после сбоя"
    finally:
        db.dispose()


def test_a_server_that_never_answers_is_down_after_the_connect_timeout(pg_via_proxy, monkeypatch):
    # The proxy takes the connection and forwards nothing (a hung host): without libpq's
    # connect_timeout the page or webhook waited for the kernel's TCP retries, minutes.
    from hotline import db as dbmodule

    monkeypatch.setattr(dbmodule, "CONNECT_SECONDS", 2)
    db = Database(pg_via_proxy.url)
    try:
        pg_via_proxy.freeze()
        with pytest.raises(DatabaseUnavailable, match="timeout expired"):
            db.ping()
        pg_via_proxy.restore()
        db.ping()
    finally:
        db.dispose()


def test_a_network_gone_under_open_connections_is_down_within_seconds(_postgres_database, tmp_path):
    # The network to the database goes (a partition, a host that died): nothing answers and
    # nothing refuses. A query on a pooled connection, and one already waiting for its
    # answer, used to wait for the kernel's TCP retries (15 minutes), holding the page.
    # Here the client reaches PostgreSQL over the loopback of a network namespace of its
    # own, and that loopback goes down under it. A proxy in the namespace forwards to a
    # Unix socket (reachable from any namespace), a proxy here from it to the server.
    namespace = f"hotline-test-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", namespace], capture_output=True).returncode != 0:
        missing_service("cannot make a network namespace (needs root and iproute2)")
    server = make_url(_postgres_database)
    relay = DbProxy((server.host or "127.0.0.1", server.port or 5432), listen_path=str(tmp_path / "pg.sock"))
    code = "import sys; from tests.hotline.test_database_down import partitioned; partitioned(*sys.argv[1:])"
    command = [sys.executable, "-c", code, _postgres_database, str(relay.listen_path)]
    try:
        child = subprocess.run(
            ["ip", "netns", "exec", namespace, *command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).parents[2],
        )
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=True)
        relay.cut()
    assert child.returncode == 0, child.stderr
    lines = dict(line.split(": ", 1) for line in child.stdout.splitlines())
    for case in ("pooled", "waiting"):
        seconds, error = lines[case].split(" ", 1)
        # At least the 2 s limit: a timeout, not a refusal (that would not test them).
        assert 1.9 <= float(seconds) < 8 and error.startswith("database unavailable"), lines
    assert lines["back"] == "1"


def partitioned(url: str, relay_path: str) -> None:
    """The child of the test above, in its network namespace: prints how long each query
    took to fail once the loopback went down (TCP_SECONDS and CONNECT_SECONDS at 2 s)."""
    from hotline import db as dbmodule

    dbmodule.CONNECT_SECONDS = dbmodule.TCP_SECONDS = 2
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    proxy = DbProxy(relay_path)
    db = Database(make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))

    def lo(state: str) -> None:
        subprocess.run(["ip", "link", "set", "lo", state], check=True)

    def once_running(query: str) -> None:
        """Take the loopback down once the server runs `query` (asked on another connection)."""
        running = text("SELECT count(*) FROM pg_stat_activity WHERE query = :q AND state = 'active'")
        with db.engine.connect() as conn:
            while not conn.execute(running, {"q": query}).scalar():
                conn.rollback()  # a transaction sees one snapshot of the server's activity
                time.sleep(0.05)
        lo("down")

    def timed(case: str, query: str, waits: bool) -> None:
        with db.session() as s:  # a pooled connection, open before the network goes
            assert s.execute(text("SELECT 1")).scalar() == 1
        watcher = threading.Thread(target=once_running, args=(query,)) if waits else None
        if watcher is None:
            lo("down")
        else:
            watcher.start()
        started = time.monotonic()
        try:
            with db.session() as s:
                s.execute(text(query))
        except DatabaseUnavailable as exc:
            print(f"{case}: {time.monotonic() - started:.1f} {exc}", flush=True)
        if watcher is not None:
            watcher.join()
        lo("up")

    timed("pooled", "SELECT 1", waits=False)  # sent once the network is gone: never acknowledged
    # Sent and taken by the server; the network goes while it waits for the answer: only
    # keepalives can tell.
    timed("waiting", "SELECT pg_sleep(6)", waits=True)
    with db.session() as s:
        print(f"back: {s.execute(text('SELECT 1')).scalar()}", flush=True)
    db.dispose()
    proxy.cut()


def test_cut_in_the_middle_of_a_transaction(pg_via_proxy):
    db = Database(pg_via_proxy.url)
    try:
        with pytest.raises(DatabaseUnavailable), db.session() as s:
            s.execute(text("SELECT 1"))
            pg_via_proxy.cut()
            s.execute(text("SELECT 2"))
        pg_via_proxy.restore()
        with db.session() as s:
            assert s.execute(text("SELECT 3")).scalar() == 3
    finally:
        db.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "worker", "agi"])
def test_services_started_while_the_database_is_down_say_so_in_one_line(pg_via_proxy, tmp_path, command):
    pg_via_proxy.cut()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env = {
        **clean,
        "HOTLINE_DATA_DIR": str(tmp_path / "data"),
        "HOTLINE_DATABASE_URL": pg_via_proxy.url,
        "HOTLINE_SECRET_KEY": "test-secret-key",
        "HOTLINE_ASR": "fake",
    }
    done = subprocess.run(HOTLINE + [command], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: database unavailable: ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(
    "change, says",
    [
        ({"username": "no_such_role_here"}, 'role "no_such_role_here" does not exist'),
        ({"database": "no_such_database_here"}, 'database "no_such_database_here" does not exist'),
    ],
)
@pytest.mark.parametrize("command", ["db", "serve", "worker"])
def test_a_refusal_for_good_is_status_78_not_3(_postgres_database, tmp_path, change, says, command):
    # systemd restarts on 3 (down for now) and on 1 (a crash), and must not restart forever
    # on a wrong role or name: 78, EX_CONFIG, the units' RestartPreventExitStatus.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    url = make_url(_postgres_database).set(**change).render_as_string(hide_password=False)
    env = {**clean, "HOTLINE_DATA_DIR": str(tmp_path / "data"), "HOTLINE_DATABASE_URL": url}
    env.update(HOTLINE_SECRET_KEY="k", HOTLINE_ASR="fake", HOTLINE_HTTP_PORT="1", HOTLINE_AGI_PORT="1")
    args = ["db", "upgrade"] if command == "db" else [command]
    done = subprocess.run(HOTLINE + args, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 78, done.stderr
    assert done.stderr.startswith("error: database refused the connection: ") and says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_refusals_and_outages_are_told_apart():
    from hotline.db import DatabaseMisconfigured, database_error

    prefix = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
    refused = database_error(prefix + 'FATAL:  password authentication failed for user "hotline"')
    assert isinstance(refused, DatabaseMisconfigured) and refused.exit_status == 78
    assert "HOTLINE_DATABASE_URL" in str(refused)
    down = database_error(prefix + "Connection refused\n\tIs the server running?")
    assert not isinstance(down, DatabaseMisconfigured) and down.exit_status == 3
    assert str(down).startswith("database unavailable: ") and "\n" not in str(down)
