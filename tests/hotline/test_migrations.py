"""The migrations are the schema: they must match the models and go down and up again."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hotline.db import upgrade
from hotline.models import Base


def test_migrations_match_the_models(any_db):
    with any_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(any_db):
    upgrade(any_db.engine)
    upgrade(any_db.engine)
    test_migrations_match_the_models(any_db)
