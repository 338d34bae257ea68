"""messages carry the id of the transaction that stored them, for the commit-ordered message feed; a thread's
messages are indexed by account and thread

Revision ID: b3f18e6a0d42
Revises: 9e1b7d3c5a24
Create Date: 2026-12-03 17:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b3f18e6a0d42"
down_revision: str | None = "9e1b7d3c5a24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A volatile default rewrites the table once: the messages stored so far all get this migration's
    # transaction, so the feed lists them first, in id order.
    op.execute("ALTER TABLE messages ADD COLUMN feed_xid xid8 DEFAULT pg_current_xact_id() NOT NULL")
    op.create_index("ix_messages_account_id_feed_xid", "messages", ["account_id", "feed_xid", "id"], unique=False)
    op.create_index("ix_messages_account_id_thread_id", "messages", ["account_id", "thread_id"], unique=False)
    op.drop_index("ix_messages_thread_id", table_name="messages")


def downgrade() -> None:
    op.create_index("ix_messages_thread_id", "messages", ["thread_id"], unique=False)
    op.drop_index("ix_messages_account_id_thread_id", table_name="messages")
    op.drop_index("ix_messages_account_id_feed_xid", table_name="messages")
    op.drop_column("messages", "feed_xid")
