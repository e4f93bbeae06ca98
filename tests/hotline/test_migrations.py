"""The migrations are the schema: they must match the models and go down and up again."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from hotline import registry
from hotline.db import alembic_config, current_revision, upgrade
from hotline.models import Base
from hotline.search import FTS_TABLE, PG_INDEX, RequestFilter, is_index_object, search_requests


def _diff(database):
    with database.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, parent: not is_index_object(name),
            },
        )
        return compare_metadata(context, Base.metadata)


def test_migrations_match_the_models(any_db):
    assert _diff(any_db) == []


def test_upgrade_is_idempotent(any_db):
    upgrade(any_db.engine)
    upgrade(any_db.engine)
    test_migrations_match_the_models(any_db)


def _search_index_exists(database) -> bool:
    with database.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            return inspect(conn).has_table(FTS_TABLE)
        inspector = inspect(conn)
        return inspector.has_table("request_search") and PG_INDEX in {
            ix["name"] for ix in inspector.get_indexes("request_search")
        }


def test_downgrade_to_base_and_upgrade_again(any_db):
    """Every downgrade() runs, on both databases, and the schema comes back whole."""
    with any_db.session() as s:
        registry.open_request(s, kind="incident", channel="email", actor="cli", subject="Калибровка весов")
    cfg = alembic_config(any_db.engine)
    command.downgrade(cfg, "base")
    assert current_revision(any_db.engine) is None
    with any_db.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    upgrade(any_db.engine)
    assert current_revision(any_db.engine) == ScriptDirectory.from_config(cfg).get_current_head()
    assert _diff(any_db) == []
    assert _search_index_exists(any_db)


def test_migration_0004_indexes_the_requests_that_exist(any_db):
    """Requests made before the word-form index are found by it once 0004 has run."""
    cfg = alembic_config(any_db.engine)
    with any_db.session() as s:
        registry.open_request(s, kind="incident", channel="email", actor="cli", subject="Калибровка весов")
    command.downgrade(cfg, "0003_helpdesk")
    assert not _search_index_exists(any_db)
    upgrade(any_db.engine)
    with any_db.session() as s:
        rows, _ = search_requests(s, RequestFilter(text="калибровки"))
        assert [r.subject for r in rows] == ["Калибровка весов"]
