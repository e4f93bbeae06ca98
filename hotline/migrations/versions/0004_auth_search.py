"""auth sessions, login attempts, Russian search

Revision ID: 0004_auth_search
Revises: 0003_helpdesk

- user_sessions: a logged-in browser per row, so that logout and a password change end
  sessions on the server (a copied cookie stops working).
- login_attempts: failed logins per (login, address), per address and per login, shared
  by every worker; replaces the per-account counter (users.failed_logins, locked_until)
  that let strangers lock an engineer out.
- request_search: the searchable text of each request, with the word-form index of the
  database (GIN on to_tsvector('russian', …) on PostgreSQL, FTS5 of Snowball stems on
  SQLite), built here for the requests that exist.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_auth_search"
down_revision = "0003_helpdesk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"])
    op.create_index(op.f("ix_user_sessions_expires_at"), "user_sessions", ["expires_at"])

    op.create_table(
        "login_attempts",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("login", sa.String(length=200), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_attempts")),
    )
    op.create_index(op.f("ix_login_attempts_login"), "login_attempts", ["login"])
    op.create_index(op.f("ix_login_attempts_updated_at"), "login_attempts", ["updated_at"])

    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of `users` would trip
    # over the foreign keys that point at it.
    op.drop_column("users", "failed_logins")
    op.drop_column("users", "locked_until")

    op.create_table(
        "request_search",
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.id"],
            name=op.f("fk_request_search_request_id_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_request_search")),
    )
    from hotline import search  # the index's own code fills it, as it will on every commit

    bind = op.get_bind()
    for statement in search.index_ddl(bind.dialect.name):
        op.execute(statement)
    search.rebuild_index(bind)


def downgrade() -> None:
    from hotline import search

    for statement in search.drop_index_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("request_search")
    op.add_column("users", sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("users", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.drop_index(op.f("ix_login_attempts_updated_at"), table_name="login_attempts")
    op.drop_index(op.f("ix_login_attempts_login"), table_name="login_attempts")
    op.drop_table("login_attempts")
    op.drop_index(op.f("ix_user_sessions_expires_at"), table_name="user_sessions")
    op.drop_index(op.f("ix_user_sessions_user_id"), table_name="user_sessions")
    op.drop_table("user_sessions")
