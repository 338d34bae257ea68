"""API: CRM records (pipelines, stages, activities, deal events), webhooks outbox, thread visibility

Revision ID: c2a4aa8fc43b
Revises: e81369f909a2
Create Date: 2026-11-24 03:43:24.137601
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c2a4aa8fc43b"
down_revision: str | None = "e81369f909a2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_pipelines_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipelines")),
    )
    op.create_index(op.f("ix_pipelines_account_id"), "pipelines", ["account_id"], unique=False)
    op.create_table(
        "webhook_subscriptions",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.ARRAY(sa.Text()), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_webhook_subscriptions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_index(op.f("ix_webhook_subscriptions_account_id"), "webhook_subscriptions", ["account_id"], unique=False)
    op.create_table(
        "stages",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("pipeline_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_stages_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_id"], ["pipelines.id"], name=op.f("fk_stages_pipeline_id_pipelines"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stages")),
    )
    op.create_index(op.f("ix_stages_account_id"), "stages", ["account_id"], unique=False)
    op.create_index(op.f("ix_stages_pipeline_id"), "stages", ["pipeline_id"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "attempt_log",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_webhook_deliveries_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name=op.f("fk_webhook_deliveries_subscription_id_webhook_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(op.f("ix_webhook_deliveries_account_id"), "webhook_deliveries", ["account_id"], unique=False)
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_subscription", "webhook_deliveries", ["subscription_id", "created_at"], unique=False
    )
    op.create_table(
        "activities",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("deal_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activities_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deals.id"], name=op.f("fk_activities_deal_id_deals"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_activities_organization_id_organizations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_activities_person_id_persons"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_activities_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activities")),
    )
    op.create_index(op.f("ix_activities_account_id"), "activities", ["account_id"], unique=False)
    op.create_index(op.f("ix_activities_deal_id"), "activities", ["deal_id"], unique=False)
    op.create_index(op.f("ix_activities_organization_id"), "activities", ["organization_id"], unique=False)
    op.create_index(op.f("ix_activities_person_id"), "activities", ["person_id"], unique=False)
    op.create_table(
        "deal_events",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("deal_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column(
            "data", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_deal_events_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"], ["deals.id"], name=op.f("fk_deal_events_deal_id_deals"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_deal_events_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deal_events")),
    )
    op.create_index(op.f("ix_deal_events_account_id"), "deal_events", ["account_id"], unique=False)
    op.create_index(op.f("ix_deal_events_deal_id"), "deal_events", ["deal_id"], unique=False)
    op.add_column("api_tokens", sa.Column("name", sa.Text(), nullable=True))
    op.add_column("deals", sa.Column("pipeline_id", sa.Uuid(), nullable=True))
    op.add_column("deals", sa.Column("stage_id", sa.Uuid(), nullable=True))
    op.add_column("deals", sa.Column("expected_close_date", sa.Date(), nullable=True))
    op.add_column("deals", sa.Column("won_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("deals", sa.Column("lost_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_deals_pipeline_id"), "deals", ["pipeline_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_deals_stage_id_stages"), "deals", "stages", ["stage_id"], ["id"], ondelete="SET NULL"
    )
    op.create_foreign_key(
        op.f("fk_deals_pipeline_id_pipelines"), "deals", "pipelines", ["pipeline_id"], ["id"], ondelete="SET NULL"
    )
    op.add_column("persons", sa.Column("phone", sa.Text(), nullable=True))
    op.add_column("threads", sa.Column("visibility", sa.String(length=16), server_default="shared", nullable=False))


def downgrade() -> None:
    op.drop_column("threads", "visibility")
    op.drop_column("persons", "phone")
    op.drop_constraint(op.f("fk_deals_pipeline_id_pipelines"), "deals", type_="foreignkey")
    op.drop_constraint(op.f("fk_deals_stage_id_stages"), "deals", type_="foreignkey")
    op.drop_index(op.f("ix_deals_pipeline_id"), table_name="deals")
    op.drop_column("deals", "lost_at")
    op.drop_column("deals", "won_at")
    op.drop_column("deals", "expected_close_date")
    op.drop_column("deals", "stage_id")
    op.drop_column("deals", "pipeline_id")
    op.drop_column("api_tokens", "name")
    op.drop_index(op.f("ix_deal_events_deal_id"), table_name="deal_events")
    op.drop_index(op.f("ix_deal_events_account_id"), table_name="deal_events")
    op.drop_table("deal_events")
    op.drop_index(op.f("ix_activities_person_id"), table_name="activities")
    op.drop_index(op.f("ix_activities_organization_id"), table_name="activities")
    op.drop_index(op.f("ix_activities_deal_id"), table_name="activities")
    op.drop_index(op.f("ix_activities_account_id"), table_name="activities")
    op.drop_table("activities")
    op.drop_index("ix_webhook_deliveries_subscription", table_name="webhook_deliveries")
    op.drop_index(
        "ix_webhook_deliveries_due", table_name="webhook_deliveries", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_index(op.f("ix_webhook_deliveries_account_id"), table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_stages_pipeline_id"), table_name="stages")
    op.drop_index(op.f("ix_stages_account_id"), table_name="stages")
    op.drop_table("stages")
    op.drop_index(op.f("ix_webhook_subscriptions_account_id"), table_name="webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
    op.drop_index(op.f("ix_pipelines_account_id"), table_name="pipelines")
    op.drop_table("pipelines")
