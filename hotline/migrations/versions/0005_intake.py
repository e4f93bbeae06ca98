"""intake robustness: recording fetches, dead letters, call closing

Revision ID: 0005_intake
Revises: 0004_auth_search
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0005_intake"
down_revision = "0004_auth_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
