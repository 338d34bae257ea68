"""lz4 compression for raw mail and bodies

Revision ID: 1d95b4439780
Revises: 722c256ef7d8
Create Date: 2026-11-24 04:34:45.235933
"""

from collections.abc import Sequence

from alembic import op

revision: str = "1d95b4439780"
down_revision: str | None = "722c256ef7d8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Postgres compresses large values with pglz by default, which on ordinary mail text cost ~3 ms per 100 KB message
# on the gateway's commit path and saved nothing; lz4 took ~0.6 ms and stored a third less. Only where the server
# was built with lz4 (it usually is); elsewhere the columns keep the default.
COLUMNS = (
    ("inbound_messages", "raw"),
    ("messages", "text_body"),
    ("messages", "html_body"),
)


def _set_compression(method: str) -> None:
    for table, column in COLUMNS:
        op.execute(
            f"DO $$ BEGIN ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method};"
            " EXCEPTION WHEN feature_not_supported THEN NULL; END $$"
        )


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("pglz")
