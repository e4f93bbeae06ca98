"""The database going away and coming back, through a proxy in front of real PostgreSQL."""

import pytest
from sqlalchemy import select, text

from hotline import registry
from hotline.db import Database, DatabaseUnavailable
from hotline.models import Request

pytestmark = pytest.mark.postgres


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
