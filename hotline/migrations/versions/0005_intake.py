"""intake robustness: recording fetches, dead letters

Revision ID: 0005_intake
Revises: 0004_auth_search
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_intake"
down_revision = "0004_auth_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recording_fetches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(length=20), nullable=False),
        sa.Column("backend_call_id", sa.String(length=120), nullable=False),
        sa.Column("recording_ref", sa.String(length=200), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_fetches")),
        sa.UniqueConstraint("recording_ref", name=op.f("uq_recording_fetches_recording_ref")),
    )
    with op.batch_alter_table("recording_fetches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recording_fetches_state"), ["state"], unique=False)
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("ref", name=op.f("uq_dead_letters_ref")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dead_letters_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_state"))
    op.drop_table("dead_letters")
    with op.batch_alter_table("recording_fetches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recording_fetches_state"))
    op.drop_table("recording_fetches")
