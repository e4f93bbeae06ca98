"""speech on the line: live transcripts

Revision ID: 0006_speech
Revises: 0005_intake
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0006_speech"
down_revision = "0005_intake"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
