"""help desk (dashboard): clarifications, replies, sessions

Revision ID: 0003_helpdesk
Revises: 0002_mail
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_helpdesk"
down_revision = "0002_mail"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch_op:
        batch_op.add_column(sa.Column("clarification_question", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch_op:
        batch_op.drop_column("clarification_question")
