"""drafts, custom fields, external ids for imports, recurring deals, stage probabilities

Revision ID: 54d0a08d6b24
Revises: 5a7c3e91b2d4
Create Date: 2026-12-02 15:03:39.166189
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "54d0a08d6b24"
# Joins the other migrations of the same day (crm's; auth's then ops'); it adds a column to crm's leads table.
down_revision: str | Sequence[str] | None = "5a7c3e91b2d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "custom_field_definitions",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("options", sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_custom_field_definitions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_custom_field_definitions")),
        sa.UniqueConstraint(
            "account_id", "entity", "key", name=op.f("uq_custom_field_definitions_account_id_entity_key")
        ),
    )
    op.create_index(
        op.f("ix_custom_field_definitions_account_id"), "custom_field_definitions", ["account_id"], unique=False
    )
    op.create_table(
        "drafts",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("author_user_id", sa.Uuid(), nullable=True),
        sa.Column("author_token_id", sa.Uuid(), nullable=True),
        sa.Column("to", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("cc", sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("bcc", sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("in_reply_to", sa.Text(), nullable=True),
        sa.Column("references", sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("message_id_header", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_user_id", sa.Uuid(), nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "attempt_log",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_inbound_id", sa.Uuid(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_drafts_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["author_token_id"],
            ["api_tokens.id"],
            name=op.f("fk_drafts_author_token_id_api_tokens"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["author_user_id"], ["users.id"], name=op.f("fk_drafts_author_user_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_user_id"], ["users.id"], name=op.f("fk_drafts_decided_by_user_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["sent_inbound_id"],
            ["inbound_messages.id"],
            name=op.f("fk_drafts_sent_inbound_id_inbound_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name=op.f("fk_drafts_thread_id_threads"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_drafts_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drafts")),
        sa.UniqueConstraint("message_id_header", name=op.f("uq_drafts_message_id_header")),
    )
    op.create_index(op.f("ix_drafts_account_id"), "drafts", ["account_id"], unique=False)
    op.create_index("ix_drafts_account_id_thread_id", "drafts", ["account_id", "thread_id"], unique=False)
    op.create_index(
        "ix_drafts_due", "drafts", ["next_attempt_at"], unique=False, postgresql_where=sa.text("status = 'approved'")
    )
    op.add_column(
        "deals",
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("deals", sa.Column("external_id", sa.Text(), nullable=True))
    op.add_column("deals", sa.Column("recurrence", sa.String(length=16), nullable=True))
    op.add_column("deals", sa.Column("recurs_from_deal_id", sa.Uuid(), nullable=True))
    op.add_column("deals", sa.Column("recurrence_anchor", sa.Date(), nullable=True))
    op.add_column("deals", sa.Column("recurrence_index", sa.Integer(), nullable=True))
    op.create_unique_constraint(op.f("uq_deals_account_id_external_id"), "deals", ["account_id", "external_id"])
    op.create_unique_constraint(
        op.f("uq_deals_account_id_recurs_from_deal_id"), "deals", ["account_id", "recurs_from_deal_id"]
    )
    op.create_foreign_key(
        op.f("fk_deals_recurs_from_deal_id_deals"),
        "deals",
        "deals",
        ["recurs_from_deal_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("leads", sa.Column("external_id", sa.Text(), nullable=True))
    op.create_unique_constraint(op.f("uq_leads_account_id_external_id"), "leads", ["account_id", "external_id"])
    op.add_column(
        "organizations",
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("organizations", sa.Column("external_id", sa.Text(), nullable=True))
    op.create_unique_constraint(
        op.f("uq_organizations_account_id_external_id"), "organizations", ["account_id", "external_id"]
    )
    op.add_column(
        "persons",
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("persons", sa.Column("external_id", sa.Text(), nullable=True))
    op.create_unique_constraint(op.f("uq_persons_account_id_external_id"), "persons", ["account_id", "external_id"])
    op.add_column("stages", sa.Column("probability", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("stages", "probability")
    op.drop_constraint(op.f("uq_persons_account_id_external_id"), "persons", type_="unique")
    op.drop_column("persons", "external_id")
    op.drop_column("persons", "custom_fields")
    op.drop_constraint(op.f("uq_organizations_account_id_external_id"), "organizations", type_="unique")
    op.drop_column("organizations", "external_id")
    op.drop_column("organizations", "custom_fields")
    op.drop_constraint(op.f("uq_leads_account_id_external_id"), "leads", type_="unique")
    op.drop_column("leads", "external_id")
    op.drop_constraint(op.f("fk_deals_recurs_from_deal_id_deals"), "deals", type_="foreignkey")
    op.drop_constraint(op.f("uq_deals_account_id_recurs_from_deal_id"), "deals", type_="unique")
    op.drop_constraint(op.f("uq_deals_account_id_external_id"), "deals", type_="unique")
    op.drop_column("deals", "recurrence_index")
    op.drop_column("deals", "recurrence_anchor")
    op.drop_column("deals", "recurs_from_deal_id")
    op.drop_column("deals", "recurrence")
    op.drop_column("deals", "external_id")
    op.drop_column("deals", "custom_fields")
    op.drop_index("ix_drafts_due", table_name="drafts", postgresql_where=sa.text("status = 'approved'"))
    op.drop_index("ix_drafts_account_id_thread_id", table_name="drafts")
    op.drop_index(op.f("ix_drafts_account_id"), table_name="drafts")
    op.drop_table("drafts")
    op.drop_index(op.f("ix_custom_field_definitions_account_id"), table_name="custom_field_definitions")
    op.drop_table("custom_field_definitions")
