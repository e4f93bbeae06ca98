"""speech on the line: live transcripts

Revision ID: 0006_speech
Revises: 0005_intake
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_speech"
down_revision = "0005_intake"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transcripts") as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(20), nullable=False, server_default="offline"))
    op.create_table(
        "live_transcripts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stream_key", sa.String(200), nullable=False),
        sa.Column("backend", sa.String(20), nullable=False),
        sa.Column("backend_call_id", sa.String(120), nullable=False),
        sa.Column("recording_ref", sa.String(200), nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("words", sa.JSON(), nullable=False),
        sa.Column("audio_seconds", sa.Float(), nullable=True),
        sa.Column("model", sa.String(120), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_transcripts")),
        sa.UniqueConstraint("stream_key", name=op.f("uq_live_transcripts_stream_key")),
    )
    op.create_index(
        op.f("ix_live_transcripts_backend_call_id"), "live_transcripts", ["backend_call_id"], unique=False
    )
    op.create_index(
        op.f("ix_live_transcripts_recording_ref"), "live_transcripts", ["recording_ref"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_live_transcripts_recording_ref"), table_name="live_transcripts")
    op.drop_index(op.f("ix_live_transcripts_backend_call_id"), table_name="live_transcripts")
    op.drop_table("live_transcripts")
    with op.batch_alter_table("transcripts") as batch_op:
        batch_op.drop_column("source")
