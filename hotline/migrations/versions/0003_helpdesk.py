"""help desk (dashboard): clarifications, replies, sessions

Revision ID: 0003_helpdesk
Revises: 0002_mail
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003_helpdesk"
down_revision = "0002_mail"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
