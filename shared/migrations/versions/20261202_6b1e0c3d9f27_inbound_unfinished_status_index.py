"""index the statuses /metrics counts (received, held, failed)

Revision ID: 6b1e0c3d9f27
Revises: 5a3d9e1c7b20
Create Date: 2026-12-02 15:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6b1e0c3d9f27"
down_revision: str | None = "5a3d9e1c7b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_inbound_messages_unfinished_status",
        "inbound_messages",
        ["status"],
        unique=False,
        postgresql_where=sa.text("status IN ('received', 'held', 'failed')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_inbound_messages_unfinished_status",
        table_name="inbound_messages",
        postgresql_where=sa.text("status IN ('received', 'held', 'failed')"),
    )
