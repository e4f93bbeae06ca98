"""The database going away and coming back, through a proxy in front of real PostgreSQL."""

import os
import subprocess
import sys

import pytest
from sqlalchemy import select, text

from hotline import registry
from hotline.db import Database, DatabaseUnavailable
from hotline.models import Request

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
