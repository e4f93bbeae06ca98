"""Alembic environment: runs on the engine handed in by hotline.db, or on the configured URL."""

from alembic import context
from sqlalchemy import create_engine

from hotline.models import Base
from hotline.search import is_index_object

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            # The word-form index (FTS5 tables, a GIN expression index) is made by SQL of
            # its own in migration 0004, not by the models: autogenerate leaves it alone.
            include_name=lambda name, type_, parent: not is_index_object(name),
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
