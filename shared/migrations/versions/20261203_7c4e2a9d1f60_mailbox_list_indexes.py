"""the mailbox's lists read their pages in index order: messages by creation, threads by activity

Revision ID: 7c4e2a9d1f60
Revises: 54d0a08d6b24
Create Date: 2026-12-03 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c4e2a9d1f60"
down_revision: str | None = "54d0a08d6b24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVITY = sa.text("coalesce(last_message_at, created_at)")


def upgrade() -> None:
    # Each replaces the account's plain index: it leads with the account too, so it serves what that one did.
    op.create_index("ix_messages_account_id_created_at", "messages", ["account_id", "created_at", "id"])
    op.drop_index("ix_messages_account_id", table_name="messages")
    op.create_index("ix_threads_account_id_activity", "threads", ["account_id", _ACTIVITY, "id"])
    op.drop_index("ix_threads_account_id", table_name="threads")


def downgrade() -> None:
    op.create_index("ix_threads_account_id", "threads", ["account_id"])
    op.drop_index("ix_threads_account_id_activity", table_name="threads")
    op.create_index("ix_messages_account_id", "messages", ["account_id"])
    op.drop_index("ix_messages_account_id_created_at", table_name="messages")
