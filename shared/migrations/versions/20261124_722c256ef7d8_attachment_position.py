"""attachment position

Revision ID: 722c256ef7d8
Revises: f01bf97198af
Create Date: 2026-11-24 04:29:51.858783
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "722c256ef7d8"
down_revision: str | None = "f01bf97198af"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attachments", sa.Column("position", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("attachments", "position")
