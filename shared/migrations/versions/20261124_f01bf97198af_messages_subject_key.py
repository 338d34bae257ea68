"""messages subject key

Revision ID: f01bf97198af
Revises: c2a4aa8fc43b
Create Date: 2026-11-24 04:17:01.779005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f01bf97198af"
down_revision: str | None = "c2a4aa8fc43b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("subject_key", sa.Text(), nullable=True))
    op.create_index("ix_messages_account_id_subject_key", "messages", ["account_id", "subject_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_messages_account_id_subject_key", table_name="messages")
    op.drop_column("messages", "subject_key")
