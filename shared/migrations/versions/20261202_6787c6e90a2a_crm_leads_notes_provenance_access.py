"""CRM: leads, notes, organization relations, activity types, provenance, deal owners, pipeline access

Revision ID: 6787c6e90a2a
Revises: 1d95b4439780
Create Date: 2026-12-02 14:45:52.437508
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "6787c6e90a2a"
down_revision: str | None = "1d95b4439780"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activity_types",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activity_types_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_types")),
        sa.UniqueConstraint("account_id", "key", name=op.f("uq_activity_types_account_id_key")),
    )
    op.create_index(op.f("ix_activity_types_account_id"), "activity_types", ["account_id"], unique=False)
    op.create_table(
        "organization_relations",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("related_organization_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_organization_relations_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_organization_relations_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["related_organization_id"],
            ["organizations.id"],
            name=op.f("fk_organization_relations_related_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_relations")),
        sa.UniqueConstraint(
            "account_id",
            "organization_id",
            "related_organization_id",
            name=op.f("uq_organization_relations_account_id_organization_id_related_organization_id"),
        ),
    )
    op.create_index(
        op.f("ix_organization_relations_account_id"), "organization_relations", ["account_id"], unique=False
    )
    op.create_index(
        "ix_organization_relations_related", "organization_relations", ["related_organization_id"], unique=False
    )
    op.create_table(
        "pipeline_members",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("pipeline_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_pipeline_members_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"],
            ["pipelines.id"],
            name=op.f("fk_pipeline_members_pipeline_id_pipelines"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_pipeline_members_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("pipeline_id", "user_id", name=op.f("pk_pipeline_members")),
    )
    op.create_index(op.f("ix_pipeline_members_account_id"), "pipeline_members", ["account_id"], unique=False)
    op.create_index(op.f("ix_pipeline_members_user_id"), "pipeline_members", ["user_id"], unique=False)
    op.create_table(
        "leads",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("company", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("value", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("owner_user_id", sa.Uuid(), nullable=True),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("converted_person_id", sa.Uuid(), nullable=True),
        sa.Column("converted_organization_id", sa.Uuid(), nullable=True),
        sa.Column("converted_deal_id", sa.Uuid(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("updated_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_leads_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["converted_deal_id"], ["deals.id"], name=op.f("fk_leads_converted_deal_id_deals"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["converted_organization_id"],
            ["organizations.id"],
            name=op.f("fk_leads_converted_organization_id_organizations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["converted_person_id"],
            ["persons.id"],
            name=op.f("fk_leads_converted_person_id_persons"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_user_id"], ["users.id"], name=op.f("fk_leads_owner_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
        sa.UniqueConstraint("converted_deal_id", name=op.f("uq_leads_converted_deal_id")),
    )
    op.create_index(op.f("ix_leads_account_id"), "leads", ["account_id"], unique=False)
    op.create_index("ix_leads_account_id_email", "leads", ["account_id", "email"], unique=False)
    op.create_table(
        "notes",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("deal_id", sa.Uuid(), nullable=True),
        sa.Column("lead_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("updated_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_notes_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["deal_id"], ["deals.id"], name=op.f("fk_notes_deal_id_deals"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name=op.f("fk_notes_lead_id_leads"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_notes_organization_id_organizations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_notes_person_id_persons"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    op.create_index(op.f("ix_notes_account_id"), "notes", ["account_id"], unique=False)
    op.create_index(op.f("ix_notes_deal_id"), "notes", ["deal_id"], unique=False)
    op.create_index(op.f("ix_notes_lead_id"), "notes", ["lead_id"], unique=False)
    op.create_index(op.f("ix_notes_organization_id"), "notes", ["organization_id"], unique=False)
    op.create_index(op.f("ix_notes_person_id"), "notes", ["person_id"], unique=False)
    op.add_column("activities", sa.Column("lead_id", sa.Uuid(), nullable=True))
    op.add_column("activities", sa.Column("time_zone", sa.String(length=64), nullable=True))
    op.add_column("activities", sa.Column("duration_minutes", sa.Integer(), nullable=True))
    op.add_column("activities", sa.Column("created_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("activities", sa.Column("updated_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("activities", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_activities_lead_id"), "activities", ["lead_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_activities_lead_id_leads"), "activities", "leads", ["lead_id"], ["id"], ondelete="SET NULL"
    )
    op.add_column("deal_events", sa.Column("actor", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("deals", sa.Column("owner_user_id", sa.Uuid(), nullable=True))
    op.add_column("deals", sa.Column("visibility", sa.String(length=16), server_default="shared", nullable=False))
    op.add_column("deals", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("deals", sa.Column("created_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("deals", sa.Column("updated_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("deals", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_deals_owner_user_id"), "deals", ["owner_user_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_deals_owner_user_id_users"), "deals", "users", ["owner_user_id"], ["id"], ondelete="SET NULL"
    )
    op.add_column("organizations", sa.Column("created_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("organizations", sa.Column("updated_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("organizations", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("persons", sa.Column("created_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("persons", sa.Column("updated_by", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("persons", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("pipelines", sa.Column("restricted", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.add_column("threads", sa.Column("lead_id", sa.Uuid(), nullable=True))
    op.create_index(op.f("ix_threads_lead_id"), "threads", ["lead_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_threads_lead_id_leads"), "threads", "leads", ["lead_id"], ["id"], ondelete="SET NULL", use_alter=True
    )
    op.add_column("users", sa.Column("calendar_feed_hash", sa.String(length=64), nullable=True))
    op.create_unique_constraint(op.f("uq_users_calendar_feed_hash"), "users", ["calendar_feed_hash"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_users_calendar_feed_hash"), "users", type_="unique")
    op.drop_column("users", "calendar_feed_hash")
    op.drop_constraint(op.f("fk_threads_lead_id_leads"), "threads", type_="foreignkey")
    op.drop_index(op.f("ix_threads_lead_id"), table_name="threads")
    op.drop_column("threads", "lead_id")
    op.drop_column("pipelines", "restricted")
    op.drop_column("persons", "updated_at")
    op.drop_column("persons", "updated_by")
    op.drop_column("persons", "created_by")
    op.drop_column("organizations", "updated_at")
    op.drop_column("organizations", "updated_by")
    op.drop_column("organizations", "created_by")
    op.drop_constraint(op.f("fk_deals_owner_user_id_users"), "deals", type_="foreignkey")
    op.drop_index(op.f("ix_deals_owner_user_id"), table_name="deals")
    op.drop_column("deals", "updated_at")
    op.drop_column("deals", "updated_by")
    op.drop_column("deals", "created_by")
    op.drop_column("deals", "deleted_at")
    op.drop_column("deals", "visibility")
    op.drop_column("deals", "owner_user_id")
    op.drop_column("deal_events", "actor")
    op.drop_constraint(op.f("fk_activities_lead_id_leads"), "activities", type_="foreignkey")
    op.drop_index(op.f("ix_activities_lead_id"), table_name="activities")
    op.drop_column("activities", "updated_at")
    op.drop_column("activities", "updated_by")
    op.drop_column("activities", "created_by")
    op.drop_column("activities", "duration_minutes")
    op.drop_column("activities", "time_zone")
    op.drop_column("activities", "lead_id")
    op.drop_index(op.f("ix_notes_person_id"), table_name="notes")
    op.drop_index(op.f("ix_notes_organization_id"), table_name="notes")
    op.drop_index(op.f("ix_notes_lead_id"), table_name="notes")
    op.drop_index(op.f("ix_notes_deal_id"), table_name="notes")
    op.drop_index(op.f("ix_notes_account_id"), table_name="notes")
    op.drop_table("notes")
    op.drop_index("ix_leads_account_id_email", table_name="leads")
    op.drop_index(op.f("ix_leads_account_id"), table_name="leads")
    op.drop_table("leads")
    op.drop_index(op.f("ix_pipeline_members_user_id"), table_name="pipeline_members")
    op.drop_index(op.f("ix_pipeline_members_account_id"), table_name="pipeline_members")
    op.drop_table("pipeline_members")
    op.drop_index("ix_organization_relations_related", table_name="organization_relations")
    op.drop_index(op.f("ix_organization_relations_account_id"), table_name="organization_relations")
    op.drop_table("organization_relations")
    op.drop_index(op.f("ix_activity_types_account_id"), table_name="activity_types")
    op.drop_table("activity_types")
