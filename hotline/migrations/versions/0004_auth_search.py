"""auth sessions, login attempts, Russian search

Revision ID: 0004_auth_search
Revises: 0003_helpdesk
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0004_auth_search"
down_revision = "0003_helpdesk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
