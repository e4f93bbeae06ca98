"""asterisk field fixes

Revision ID: 0007_asterisk
Revises: 0006_speech
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0007_asterisk"
down_revision = "0006_speech"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
