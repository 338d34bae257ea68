"""inbound rows found by their stored message (its arrival time and .eml on every mailbox page)

Revision ID: 9e1b7d3c5a24
Revises: 7c4e2a9d1f60
Create Date: 2026-12-03 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9e1b7d3c5a24"
down_revision: str | None = "7c4e2a9d1f60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_inbound_messages_message_id",
        "inbound_messages",
        ["message_id"],
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_message_id", table_name="inbound_messages")
