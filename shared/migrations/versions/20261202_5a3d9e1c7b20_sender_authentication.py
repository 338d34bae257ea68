"""sender authentication results, HELO, alias confirmation by mail

Revision ID: 5a3d9e1c7b20
Revises: 1d95b4439780
Create Date: 2026-12-02 14:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5a3d9e1c7b20"
down_revision: str | None = "1d95b4439780"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("inbound_messages", sa.Column("helo", sa.Text(), nullable=True))
    for table in ("inbound_messages", "messages"):
        op.add_column(table, sa.Column("auth_summary", sa.String(length=16), nullable=True))
        op.add_column(table, sa.Column("auth_results", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("user_aliases", sa.Column("confirmation_token_sha256", sa.String(length=64), nullable=True))
    op.add_column("user_aliases", sa.Column("confirmation_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.create_unique_constraint(
        op.f("uq_user_aliases_confirmation_token_sha256"), "user_aliases", ["confirmation_token_sha256"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_user_aliases_confirmation_token_sha256"), "user_aliases", type_="unique")
    op.drop_column("user_aliases", "confirmation_sent_at")
    op.drop_column("user_aliases", "confirmation_token_sha256")
    for table in ("messages", "inbound_messages"):
        op.drop_column(table, "auth_results")
        op.drop_column(table, "auth_summary")
    op.drop_column("inbound_messages", "helo")
