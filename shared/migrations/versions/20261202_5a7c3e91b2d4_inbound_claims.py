"""inbound claims: a lease on the rows a matcher batch works on

Revision ID: 5a7c3e91b2d4
Revises: 6787c6e90a2a
Create Date: 2026-12-02 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5a7c3e91b2d4"
down_revision: str | None = "6787c6e90a2a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inbound_messages", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("inbound_messages", "claimed_until")
