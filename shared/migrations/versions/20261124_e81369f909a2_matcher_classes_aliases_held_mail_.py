"""matcher classes aliases held mail organizations deal chooser

Revision ID: e81369f909a2
Revises: c5f9a4eabae7
Create Date: 2026-11-24 03:38:54.183593
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e81369f909a2"
down_revision: str | None = "c5f9a4eabae7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_from", sa.String(length=16), nullable=False),
        sa.Column("created_by_rule", sa.Text(), nullable=True),
        sa.Column("created_by_message_id", sa.Uuid(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_organizations_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by_message_id"],
            ["messages.id"],
            name=op.f("fk_organizations_created_by_message_id_messages"),
            ondelete="SET NULL",
            use_alter=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
    )
    op.create_index(op.f("ix_organizations_account_id"), "organizations", ["account_id"], unique=False)
    op.create_table(
        "organization_domains",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_organization_domains_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_organization_domains_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organization_domains")),
        sa.UniqueConstraint("account_id", "domain", name=op.f("uq_organization_domains_account_id_domain")),
    )
    op.create_index(op.f("ix_organization_domains_account_id"), "organization_domains", ["account_id"], unique=False)
    op.create_index(
        op.f("ix_organization_domains_organization_id"), "organization_domains", ["organization_id"], unique=False
    )
    op.create_table(
        "thread_participants",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_thread_participants_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name=op.f("fk_thread_participants_thread_id_threads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("thread_id", "address", name=op.f("pk_thread_participants")),
    )
    op.create_index("ix_thread_participants_lookup", "thread_participants", ["account_id", "address"], unique=False)
    op.create_table(
        "user_aliases",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_user_aliases_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_aliases_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_aliases")),
        sa.UniqueConstraint("account_id", "address", name=op.f("uq_user_aliases_account_id_address")),
    )
    op.create_index(op.f("ix_user_aliases_account_id"), "user_aliases", ["account_id"], unique=False)
    op.create_index(op.f("ix_user_aliases_user_id"), "user_aliases", ["user_id"], unique=False)
    op.create_table(
        "disambiguations",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column(
            "candidates", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolved_deal_id", sa.Uuid(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_disambiguations_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["resolved_deal_id"],
            ["deals.id"],
            name=op.f("fk_disambiguations_resolved_deal_id_deals"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["threads.id"], name=op.f("fk_disambiguations_thread_id_threads"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_disambiguations_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disambiguations")),
        sa.UniqueConstraint("account_id", "thread_id", name=op.f("uq_disambiguations_account_id_thread_id")),
    )
    op.create_index(op.f("ix_disambiguations_account_id"), "disambiguations", ["account_id"], unique=False)
    op.create_index(op.f("ix_disambiguations_user_id"), "disambiguations", ["user_id"], unique=False)
    op.add_column("deals", sa.Column("organization_id", sa.Uuid(), nullable=True))
    op.create_index(op.f("ix_deals_organization_id"), "deals", ["organization_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_deals_organization_id_organizations"),
        "deals",
        "organizations",
        ["organization_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("inbound_messages", sa.Column("hold_reason", sa.Text(), nullable=True))
    op.add_column("inbound_messages", sa.Column("held_references", postgresql.ARRAY(sa.Text()), nullable=True))
    op.create_index(
        "ix_inbound_messages_held_references",
        "inbound_messages",
        ["held_references"],
        unique=False,
        postgresql_using="gin",
        postgresql_where=sa.text("status = 'held'"),
    )
    op.add_column("message_persons", sa.Column("rule", sa.Text(), nullable=True))
    op.add_column("messages", sa.Column("new_text", sa.Text(), nullable=True))
    op.add_column("messages", sa.Column("kind", sa.String(length=16), server_default="sent", nullable=False))
    op.add_column("messages", sa.Column("kind_reason", sa.Text(), nullable=True))
    op.add_column("messages", sa.Column("forwarded_by_user_id", sa.Uuid(), nullable=True))
    op.add_column("messages", sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("messages", sa.Column("forward_confidence", sa.Float(), nullable=True))
    op.create_foreign_key(
        op.f("fk_messages_forwarded_by_user_id_users"),
        "messages",
        "users",
        ["forwarded_by_user_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("person_emails", sa.Column("bounced_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("person_emails", sa.Column("bounce_message_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_person_emails_bounce_message_id_messages"),
        "person_emails",
        "messages",
        ["bounce_message_id"],
        ["id"],
        ondelete="SET NULL",
        use_alter=True,
    )
    op.add_column("persons", sa.Column("organization_id", sa.Uuid(), nullable=True))
    op.add_column("persons", sa.Column("organization_rule", sa.Text(), nullable=True))
    op.add_column("persons", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_persons_organization_id"), "persons", ["organization_id"], unique=False)
    op.create_foreign_key(
        op.f("fk_persons_organization_id_organizations"),
        "persons",
        "organizations",
        ["organization_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.add_column("threads", sa.Column("normalized_subject", sa.Text(), nullable=True))
    op.add_column("threads", sa.Column("deal_rule", sa.Text(), nullable=True))
    op.add_column("threads", sa.Column("deal_linked_by_message_id", sa.Uuid(), nullable=True))
    op.add_column("threads", sa.Column("first_message_at", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        op.f("fk_threads_deal_linked_by_message_id_messages"),
        "threads",
        "messages",
        ["deal_linked_by_message_id"],
        ["id"],
        ondelete="SET NULL",
        use_alter=True,
    )
    # Closes the organizations → messages cycle (use_alter in the model), so it comes after both tables exist.
    op.create_foreign_key(
        op.f("fk_organizations_created_by_message_id_messages"),
        "organizations",
        "messages",
        ["created_by_message_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_organizations_created_by_message_id_messages"), "organizations", type_="foreignkey")
    op.drop_constraint(op.f("fk_threads_deal_linked_by_message_id_messages"), "threads", type_="foreignkey")
    op.drop_column("threads", "first_message_at")
    op.drop_column("threads", "deal_linked_by_message_id")
    op.drop_column("threads", "deal_rule")
    op.drop_column("threads", "normalized_subject")
    op.drop_constraint(op.f("fk_persons_organization_id_organizations"), "persons", type_="foreignkey")
    op.drop_index(op.f("ix_persons_organization_id"), table_name="persons")
    op.drop_column("persons", "deleted_at")
    op.drop_column("persons", "organization_rule")
    op.drop_column("persons", "organization_id")
    op.drop_constraint(op.f("fk_person_emails_bounce_message_id_messages"), "person_emails", type_="foreignkey")
    op.drop_column("person_emails", "bounce_message_id")
    op.drop_column("person_emails", "bounced_at")
    op.drop_constraint(op.f("fk_messages_forwarded_by_user_id_users"), "messages", type_="foreignkey")
    op.drop_column("messages", "forward_confidence")
    op.drop_column("messages", "forwarded_at")
    op.drop_column("messages", "forwarded_by_user_id")
    op.drop_column("messages", "kind_reason")
    op.drop_column("messages", "kind")
    op.drop_column("messages", "new_text")
    op.drop_column("message_persons", "rule")
    op.drop_index(
        "ix_inbound_messages_held_references",
        table_name="inbound_messages",
        postgresql_using="gin",
        postgresql_where=sa.text("status = 'held'"),
    )
    op.drop_column("inbound_messages", "held_references")
    op.drop_column("inbound_messages", "hold_reason")
    op.drop_constraint(op.f("fk_deals_organization_id_organizations"), "deals", type_="foreignkey")
    op.drop_index(op.f("ix_deals_organization_id"), table_name="deals")
    op.drop_column("deals", "organization_id")
    op.drop_index(op.f("ix_disambiguations_user_id"), table_name="disambiguations")
    op.drop_index(op.f("ix_disambiguations_account_id"), table_name="disambiguations")
    op.drop_table("disambiguations")
    op.drop_index(op.f("ix_user_aliases_user_id"), table_name="user_aliases")
    op.drop_index(op.f("ix_user_aliases_account_id"), table_name="user_aliases")
    op.drop_table("user_aliases")
    op.drop_index("ix_thread_participants_lookup", table_name="thread_participants")
    op.drop_table("thread_participants")
    op.drop_index(op.f("ix_organization_domains_organization_id"), table_name="organization_domains")
    op.drop_index(op.f("ix_organization_domains_account_id"), table_name="organization_domains")
    op.drop_table("organization_domains")
    op.drop_index(op.f("ix_organizations_account_id"), table_name="organizations")
    op.drop_table("organizations")
