"""The database schema. Every table carries `account_id`: it is the tenancy boundary and the future shard key."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 -- SQLAlchemy reads this class attribute as declared
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        list[dict[str, Any]]: JSONB,
    }


def _new_id() -> uuid.UUID:
    return uuid.uuid4()


class Id:
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_new_id)


class Created:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Provenance:
    """Who made and who last changed a CRM record: an `Actor` (services/api/provenance.py) as JSON.

    `{"kind": "user" | "integration" | "matcher", "user_id", "token_id", "name", "rule", "message_id"}`; one shape
    for every record, so a client draws the same badge everywhere.
    """

    created_by: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_by: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime | None]


def account_fk(*, index: bool = True) -> Mapped[uuid.UUID]:
    """`index=False` where a composite index leads with the account instead."""
    return mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=index)


_Member = TypeVar("_Member", bound=enum.StrEnum)


def _values(vocabulary: type[enum.StrEnum]) -> list[str]:
    return [member.value for member in vocabulary]


def vocabulary(enum_class: type[enum.StrEnum], length: int) -> Enum:
    """A column holding one of `enum_class`'s values, stored as the plain VARCHAR(length) the migrations made.

    Rows read back as enum members; writing a value outside the enum fails before it reaches the database. No
    native Postgres enum and no CHECK constraint: adding a value stays a code change, not a migration.
    """
    return Enum(enum_class, native_enum=False, length=length, values_callable=_values, validate_strings=True)


class TextVocabulary(TypeDecorator[_Member]):
    """Like `vocabulary()`, for a TEXT column (a VARCHAR-typed `Enum` would change the column's type)."""

    impl = Text
    cache_ok = True

    def __init__(self, enum_class: type[_Member]) -> None:
        super().__init__()
        self.enum_class = enum_class

    def process_bind_param(self, value: _Member | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_class(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> _Member | None:
        return None if value is None else self.enum_class(value)


class Account(Id, Created, Base):
    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(200))
    # Per-account matcher settings (sub-address folding, people cap, organizations, blocklist, ...).
    settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))


class TokenScope(enum.StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


class ApiToken(Id, Created, Base):
    __tablename__ = "api_tokens"

    account_id: Mapped[uuid.UUID] = account_fk()
    # SHA-256 of the token: a leaked database does not leak working credentials.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[TokenScope] = mapped_column(vocabulary(TokenScope, 16), default=TokenScope.admin)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    revoked_at: Mapped[datetime | None]
    # A label for people ("CI export", "Zapier"); the token itself is shown once and never stored.
    name: Mapped[str | None] = mapped_column(Text)


class User(Id, Created, Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("account_id", "email"),)

    account_id: Mapped[uuid.UUID] = account_fk()
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    # The random local part of the user's Smart-BCC address; globally unique because RCPT has no account yet.
    bcc_local_part: Mapped[str] = mapped_column(String(64), unique=True)
    # SHA-256 of the secret in the user's iCalendar feed URL (shown once, like API tokens); None = no feed.
    calendar_feed_hash: Mapped[str | None] = mapped_column(String(64), unique=True)


class UserAlias(Id, Created, Base):
    """Another From address of a user. Only verified aliases make mail count as sent by the user."""

    __tablename__ = "user_aliases"
    __table_args__ = (UniqueConstraint("account_id", "address"),)

    account_id: Mapped[uuid.UUID] = account_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(Text)
    verified_at: Mapped[datetime | None]
    # Verification by mail: the SHA-256 of the secret sent to the address (the secret itself is never stored),
    # and when it was sent (it expires).
    confirmation_token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    confirmation_sent_at: Mapped[datetime | None]


class InboundStatus(enum.StrEnum):
    received = "received"  # committed by the gateway, waiting for the matcher
    processed = "processed"
    held = "held"  # kept, not placed (unverified sender, stranger, too many new people…); hold_reason says why
    failed = "failed"  # the matcher gave up after its retries; last_error says why
    # A user decided it does not belong in the CRM. The row and raw bytes stay (nothing is ever dropped), so the
    # decision can be audited; the matcher ignores it like any other finished message.
    discarded = "discarded"


class AuthSummary(enum.StrEnum):
    """Sender authentication of a mail, in one word (services.matcher.authentication has the details)."""

    passed = "pass"  # SPF or DKIM passed for a domain aligned with From
    failed = "fail"  # a check failed (a broken signature, an SPF fail or softfail, a DMARC fail)
    none = "none"  # nothing to check: no signature, no SPF record, no DMARC record


class InboundMessage(Id, Base):
    """The raw message exactly as the gateway accepted it: the durable record behind every `250`."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        # The recovery sweep reads only what is still waiting; a partial index keeps that cheap at any volume.
        Index(
            "ix_inbound_messages_waiting",
            "received_at",
            postgresql_where=text("status = 'received'"),
        ),
        Index(
            "ix_inbound_messages_held_references",
            "held_references",
            postgresql_using="gin",
            postgresql_where=text("status = 'held'"),
        ),
        # /metrics counts waiting, held and failed mail at every scrape: from this small index, not the table.
        Index(
            "ix_inbound_messages_unfinished_status",
            "status",
            postgresql_where=text("status IN ('received', 'held', 'failed')"),
        ),
        # Rendering a message reads when it first arrived, and its .eml, by the stored message: without this, every
        # page of the mailbox scanned all of the account's inbound rows.
        Index(
            "ix_inbound_messages_message_id",
            "message_id",
            postgresql_where=text("message_id IS NOT NULL"),
        ),
    )

    account_id: Mapped[uuid.UUID] = account_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    envelope_from: Mapped[str] = mapped_column(Text)
    envelope_to: Mapped[str] = mapped_column(Text)
    peer: Mapped[str | None] = mapped_column(Text)
    # The name the client gave in HELO/EHLO: SPF checks it when the envelope sender is empty (bounces).
    helo: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    status: Mapped[InboundStatus] = mapped_column(vocabulary(InboundStatus, 16), default=InboundStatus.received)
    # Counted when a worker claims the row, before any work: a message that kills its worker still counts.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The claim's lease: until then one worker owns the row; past it (the worker died) the row is due again.
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    hold_reason: Mapped[str | None] = mapped_column(Text)
    # For mail held as "on none of the user's threads": its own and referenced Message-IDs, so that the user's
    # message that later starts that thread releases it (arrival order must not decide what is kept out).
    held_references: Mapped[list[str] | None] = mapped_column(postgresql.ARRAY(Text))
    processed_at: Mapped[datetime | None]
    message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL", use_alter=True))
    # Sender authentication as checked on first processing (see services.matcher.authentication), kept so that a
    # retry or a reprocess decides on the same facts.
    auth_summary: Mapped[AuthSummary | None] = mapped_column(vocabulary(AuthSummary, 16))
    auth_results: Mapped[dict[str, Any] | None]


class ThreadDealRule(enum.StrEnum):
    """Why a thread has its deal, or has none although it could."""

    single_open_deal = "single-open-deal"  # its people have exactly one open deal
    sub_address = "sub-address"  # the mail went to the deal's (or its lead's) `+deal-<id>` address
    user_choice = "user-choice"  # a user picked the deal; the matcher never overrides it
    user_declined = "user-declined"  # a user said "none of these"; the matcher never links it again
    lead_converted = "lead-converted"  # the lead whose mail it is became this deal


class ThreadVisibility(enum.StrEnum):
    shared = "shared"  # everyone in the account
    private = "private"  # only tokens of the users whose mail is in it, and account-wide tokens


class Thread(Id, Created, Base):
    __tablename__ = "threads"
    __table_args__ = (
        # The mailbox lists an account's threads most recently active first, a page at a time (see the API's
        # `thread_activity`): read in index order, not sorted whole for every page.
        Index("ix_threads_account_id_activity", "account_id", text("coalesce(last_message_at, created_at)"), "id"),
    )

    account_id: Mapped[uuid.UUID] = account_fk(index=False)
    subject: Mapped[str | None] = mapped_column(Text)
    # The subject without Re:/Fwd:/AW:/[EXT]… prefixes: the key of the fallback for mail without references.
    normalized_subject: Mapped[str | None] = mapped_column(Text)
    deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL", use_alter=True))
    deal_rule: Mapped[ThreadDealRule | None] = mapped_column(TextVocabulary(ThreadDealRule))
    deal_linked_by_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL", use_alter=True)
    )
    first_message_at: Mapped[datetime | None]
    last_message_at: Mapped[datetime | None]
    visibility: Mapped[ThreadVisibility] = mapped_column(
        vocabulary(ThreadVisibility, 16), server_default=ThreadVisibility.shared.value
    )
    # Mail about a lead (sent to its `+lead-<id>` sub-address); stays when the lead is converted, for its history.
    lead_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("leads.id", ondelete="SET NULL", use_alter=True), index=True
    )


class ThreadParticipant(Base):
    """An external address that took part in a thread (for the subject fallback and the deal candidates)."""

    __tablename__ = "thread_participants"
    __table_args__ = (Index("ix_thread_participants_lookup", "account_id", "address"),)

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(Text, primary_key=True)


class ThreadKey(Base):
    """Every Message-ID a thread knows: its messages' own and the ones they reference (JWZ's "containers").

    A referenced id that has not arrived yet is kept here, so its message joins the same thread when it comes;
    the primary key makes two workers that meet the same id agree on one thread.
    """

    __tablename__ = "thread_keys"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    message_id_header: Mapped[str] = mapped_column(Text, primary_key=True)
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), index=True)


class MessageKind(enum.StrEnum):
    sent = "sent"  # a copy of mail the user sent
    forwarded = "forwarded"  # the user forwarded someone's mail; the stored message is the original
    contact = "contact"  # a contact wrote straight to the Smart-BCC address, on a known thread
    auto_reply = "auto_reply"
    bounce = "bounce"
    bulk = "bulk"  # mailing lists, newsletters, Precedence: bulk


class TransactionId(UserDefinedType[int]):
    """Postgres `xid8`: the 64-bit id of the transaction that wrote a row, which never wraps around."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "xid8"

    def result_processor(self, _dialect: Dialect, _coltype: object) -> Any:
        return lambda value: None if value is None else int(value)


# So that reflection (Alembic's drift check) knows the type by its name.
postgresql.base.ischema_names["xid8"] = TransactionId


class Direction(enum.StrEnum):
    outbound = "outbound"  # the user sent it (the BCC copy)
    inbound = "inbound"  # someone else wrote it


class Message(Id, Created, Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("account_id", "message_id_header"),
        # The subject fallback of threading looks up messages by their subject's key.
        Index("ix_messages_account_id_subject_key", "account_id", "subject_key"),
        # `GET /v1/messages` lists an account's messages newest first, a page at a time: read in index order, not
        # sorted whole for every page.
        Index("ix_messages_account_id_created_at", "account_id", "created_at", "id"),
        # `GET /v1/messages/feed` follows an account's messages in the order their transactions made them visible.
        Index("ix_messages_account_id_feed_xid", "account_id", "feed_xid", "id"),
        # A thread's messages (each new message asks who is on its thread). Led by the account like every query,
        # so that the planner does not combine a thread index with an account-wide one while the statistics still
        # say the account is small.
        Index("ix_messages_account_id_thread_id", "account_id", "thread_id"),
    )

    account_id: Mapped[uuid.UUID] = account_fk(index=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("threads.id"))
    # Normalized Message-ID without angle brackets; a hash of the raw bytes when the header is missing.
    message_id_header: Mapped[str] = mapped_column(Text)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    subject: Mapped[str | None] = mapped_column(Text)
    # The subject without reply/forward prefixes, None when too generic to join threads by (see matcher.subjects).
    subject_key: Mapped[str | None] = mapped_column(Text)
    from_name: Mapped[str | None] = mapped_column(Text)
    from_address: Mapped[str | None] = mapped_column(Text)
    to: Mapped[list[dict[str, Any]]] = mapped_column(server_default=text("'[]'::jsonb"))
    cc: Mapped[list[dict[str, Any]]] = mapped_column(server_default=text("'[]'::jsonb"))
    sent_at: Mapped[datetime | None]
    direction: Mapped[Direction] = mapped_column(vocabulary(Direction, 16))
    text_body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    # What the parser could not read cleanly (broken boundaries, unknown charsets, ...), for people to see.
    defects: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    # The reply's own words, without quoted history and signature: the timeline preview.
    new_text: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[MessageKind] = mapped_column(vocabulary(MessageKind, 16), server_default=MessageKind.sent.value)
    # Why the matcher classified it so, in words a user can read ("Auto-Submitted: auto-replied", …).
    kind_reason: Mapped[str | None] = mapped_column(Text)
    # For a forwarded reply: who forwarded it, when, and how sure the forward parser was.
    forwarded_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    forwarded_at: Mapped[datetime | None]
    forward_confidence: Mapped[float | None] = mapped_column(Float)
    # Sender authentication of the mail that brought this message (copied from its inbound row).
    auth_summary: Mapped[AuthSummary | None] = mapped_column(vocabulary(AuthSummary, 16))
    auth_results: Mapped[dict[str, Any] | None]
    # The transaction that stored the message. Once every transaction with a smaller id has ended, no message
    # can appear before it any more: the feed reads up to that point (see services/api/mailbox/service.py).
    feed_xid: Mapped[int] = mapped_column(TransactionId(), server_default=text("pg_current_xact_id()"))


class Attachment(Id, Created, Base):
    __tablename__ = "attachments"

    account_id: Mapped[uuid.UUID] = account_fk()
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    # Where it stood in the message, so lists show files in the order the sender attached them.
    position: Mapped[int] = mapped_column(Integer, server_default="0")
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(Text)
    content_id: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class CreatedFrom(enum.StrEnum):
    """Where a person or organization came from."""

    api = "api"  # a user or integration made it
    email = "email"  # the matcher made it from mail; `created_by_rule` and `created_by_message_id` say how
    lead = "lead"  # converting a lead made it


class OrganizationRule(enum.StrEnum):
    """Why a person has their organization (`organization_rule`), or why the matcher made one (`created_by_rule`)."""

    owns_email_domain = "owns-email-domain"  # the organization owns the domain of the person's address
    work_domain_of_participant = "work-domain-of-participant"  # made for a work domain met in mail
    user = "user"  # a user set it
    lead_converted = "lead-converted"  # converting a lead set it


class Organization(Id, Created, Provenance, Base):
    __tablename__ = "organizations"
    __table_args__ = (UniqueConstraint("account_id", "external_id"),)

    account_id: Mapped[uuid.UUID] = account_fk()
    name: Mapped[str] = mapped_column(Text)
    created_from: Mapped[CreatedFrom] = mapped_column(vocabulary(CreatedFrom, 16), default=CreatedFrom.api)
    created_by_rule: Mapped[OrganizationRule | None] = mapped_column(TextVocabulary(OrganizationRule))
    created_by_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL", use_alter=True)
    )
    deleted_at: Mapped[datetime | None]
    # Values of the account's custom fields for organizations, by key; validated against the definitions on every write.
    custom_fields: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # The id the record has in the system it was imported from: re-importing the same file updates, never doubles.
    external_id: Mapped[str | None] = mapped_column(Text)


class OrganizationDomain(Id, Base):
    __tablename__ = "organization_domains"
    # One owner per domain and account: two workers meeting the same new domain create one organization.
    __table_args__ = (UniqueConstraint("account_id", "domain"),)

    account_id: Mapped[uuid.UUID] = account_fk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(Text)


class PersonRule(enum.StrEnum):
    """Why the matcher made a person (`created_by_rule`), or linked one to a message (message_persons.rule)."""

    recipient_of_sent_mail = "recipient-of-sent-mail"
    participant_of_forwarded_mail = "participant-of-forwarded-mail"
    participant_of_contact_mail = "participant-of-contact-mail"
    address_of_existing_person = "address-of-existing-person"  # a link only: the person already existed
    lead_converted = "lead-converted"  # a link only: converting the lead linked its mail to its person


class Person(Id, Created, Provenance, Base):
    __tablename__ = "persons"
    __table_args__ = (UniqueConstraint("account_id", "external_id"),)

    account_id: Mapped[uuid.UUID] = account_fk()
    name: Mapped[str] = mapped_column(Text)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL"), index=True
    )
    organization_rule: Mapped[OrganizationRule | None] = mapped_column(TextVocabulary(OrganizationRule))
    phone: Mapped[str | None] = mapped_column(Text)
    # A deleted person stays as a tombstone: its history is kept and the matcher never re-creates it.
    deleted_at: Mapped[datetime | None]
    # For e-mail, the rule and the message that made it, so it can be undone.
    created_from: Mapped[CreatedFrom] = mapped_column(vocabulary(CreatedFrom, 16), default=CreatedFrom.api)
    created_by_rule: Mapped[PersonRule | None] = mapped_column(TextVocabulary(PersonRule))
    created_by_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL", use_alter=True)
    )
    # Values of the account's custom fields for persons, by key; validated against the definitions on every write.
    custom_fields: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # The id the record has in the system it was imported from: re-importing the same file updates, never doubles.
    external_id: Mapped[str | None] = mapped_column(Text)


class PersonEmail(Id, Base):
    __tablename__ = "person_emails"
    # One person per address and account: two workers meeting the same new address create one person.
    __table_args__ = (UniqueConstraint("account_id", "address"),)

    account_id: Mapped[uuid.UUID] = account_fk()
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(Text)
    # Set when a bounce said this address does not receive mail.
    bounced_at: Mapped[datetime | None]
    bounce_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL", use_alter=True)
    )


class DealStatus(enum.StrEnum):
    open = "open"
    won = "won"
    lost = "lost"


class DealVisibility(enum.StrEnum):
    shared = "shared"  # whoever may see the deal's pipeline
    private = "private"  # only its owner (and account-wide tokens)


class DealRecurrence(enum.StrEnum):
    monthly = "monthly"
    quarterly = "quarterly"
    yearly = "yearly"


class Deal(Id, Created, Provenance, Base):
    __tablename__ = "deals"
    __table_args__ = (
        UniqueConstraint("account_id", "external_id"),
        # A deal has at most one successor in its series, however often the recurrence sweep or actor runs.
        UniqueConstraint("account_id", "recurs_from_deal_id"),
    )

    account_id: Mapped[uuid.UUID] = account_fk()
    title: Mapped[str] = mapped_column(Text)
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"), index=True)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[DealStatus] = mapped_column(vocabulary(DealStatus, 8), default=DealStatus.open)
    value: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    pipeline_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pipelines.id", ondelete="SET NULL"), index=True)
    stage_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stages.id", ondelete="SET NULL"))
    expected_close_date: Mapped[date | None]
    won_at: Mapped[datetime | None]
    lost_at: Mapped[datetime | None]
    # Values of the account's custom fields for deals, by key; validated against the definitions on every write.
    custom_fields: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # The id the record has in the system it was imported from: re-importing the same file updates, never doubles.
    external_id: Mapped[str | None] = mapped_column(Text)
    # Recurring revenue: a won deal with a recurrence gets one successor, opened when its period comes due. The
    # series keeps the first deal's won date as its anchor so month ends do not drift (31 Jan, 28 Feb, 31 Mar…).
    recurrence: Mapped[DealRecurrence | None] = mapped_column(vocabulary(DealRecurrence, 16))
    recurs_from_deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"))
    recurrence_anchor: Mapped[date | None]
    recurrence_index: Mapped[int | None] = mapped_column(Integer)
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    visibility: Mapped[DealVisibility] = mapped_column(
        vocabulary(DealVisibility, 16), server_default=DealVisibility.shared.value
    )
    # A deleted deal stays as a tombstone with its events, activities, notes and mail links: its history is kept.
    deleted_at: Mapped[datetime | None]


class MessagePersonRole(enum.StrEnum):
    """The header a person of a message was found in."""

    from_ = "from"
    to = "to"
    cc = "cc"


class MessagePerson(Base):
    """A person a message involves, and in which role (from, to, cc)."""

    __tablename__ = "message_persons"

    account_id: Mapped[uuid.UUID] = account_fk()
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[MessagePersonRole] = mapped_column(vocabulary(MessagePersonRole, 8), primary_key=True)
    rule: Mapped[PersonRule | None] = mapped_column(TextVocabulary(PersonRule))


class DisambiguationStatus(enum.StrEnum):
    pending = "pending"  # waiting for the user's answer
    resolved = "resolved"  # answered: `resolved_deal_id` is the chosen deal, or None for "none of these"
    superseded = "superseded"  # mail linked the thread to a deal itself (sub-address, a single open deal left)


class Disambiguation(Id, Created, Base):
    """A question for the user: this thread could belong to several open deals — which one (or none)?"""

    __tablename__ = "disambiguations"
    __table_args__ = (UniqueConstraint("account_id", "thread_id"),)

    account_id: Mapped[uuid.UUID] = account_fk()
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    # [{"deal_id": …, "reasons": ["open deal of person …"]}, …]
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(server_default=text("'[]'::jsonb"))
    status: Mapped[DisambiguationStatus] = mapped_column(
        vocabulary(DisambiguationStatus, 16), default=DisambiguationStatus.pending
    )
    resolved_deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None]


class Pipeline(Id, Created, Base):
    __tablename__ = "pipelines"

    account_id: Mapped[uuid.UUID] = account_fk()
    name: Mapped[str] = mapped_column(Text)
    # False: every user of the account sees and edits its deals; True: only the users in pipeline_members.
    restricted: Mapped[bool] = mapped_column(server_default=text("false"))


class PipelineMember(Base):
    """A user who may see and edit the deals of a restricted pipeline."""

    __tablename__ = "pipeline_members"

    account_id: Mapped[uuid.UUID] = account_fk()
    pipeline_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class Stage(Id, Created, Base):
    """A step of a pipeline; `position` orders them (gaps allowed, so a move touches one row)."""

    __tablename__ = "stages"

    account_id: Mapped[uuid.UUID] = account_fk()
    pipeline_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)
    # Percent chance that a deal in this stage is won; weights the revenue forecast (none: counted in full).
    probability: Mapped[int | None] = mapped_column(Integer)


class ActivityType(Id, Created, Base):
    """The activity types an account offers (call, meeting, …); the standard ones are added on first use."""

    __tablename__ = "activity_types"
    __table_args__ = (UniqueConstraint("account_id", "key"),)

    account_id: Mapped[uuid.UUID] = account_fk()
    key: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)
    # Retired types stay for the activities that have them, but new activities cannot use them.
    active: Mapped[bool] = mapped_column(server_default=text("true"))


class Activity(Id, Created, Provenance, Base):
    """A call, meeting, task… on the timeline of the person, organization and deal it is linked to."""

    __tablename__ = "activities"

    account_id: Mapped[uuid.UUID] = account_fk()
    type: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime | None]
    done: Mapped[bool] = mapped_column(server_default=text("false"))
    done_at: Mapped[datetime | None]
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"), index=True)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL"), index=True
    )
    deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"), index=True)
    lead_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"), index=True)
    # The IANA zone the due time was given in ("Europe/Berlin"): calendars show it in that zone.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    duration_minutes: Mapped[int | None] = mapped_column(Integer)


class DealEventType(enum.StrEnum):
    created = "created"  # `data`: the deal's fields at creation
    updated = "updated"  # `data`: {"field": {"from": …, "to": …}} for what changed besides status and stage
    status_changed = "status_changed"
    stage_changed = "stage_changed"  # a move between stages or pipelines
    deleted = "deleted"


class DealEvent(Id, Created, Base):
    """Something that happened to a deal (created, stage or status changed…), for its timelines."""

    __tablename__ = "deal_events"

    account_id: Mapped[uuid.UUID] = account_fk()
    deal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), index=True)
    type: Mapped[DealEventType] = mapped_column(vocabulary(DealEventType, 32))
    # What changed, as {"field": {"from": …, "to": …}}, or the deal's fields at creation.
    data: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class LeadStatus(enum.StrEnum):
    new = "new"
    in_progress = "in_progress"
    qualified = "qualified"
    converted = "converted"
    lost = "lost"


class Lead(Id, Created, Provenance, Base):
    """Someone who may become a customer, before there is a contact and a deal; converting makes both, once."""

    __tablename__ = "leads"
    __table_args__ = (
        # A lead only ever produces one contact and one deal, whatever races the conversion.
        UniqueConstraint("converted_deal_id"),
        Index("ix_leads_account_id_email", "account_id", "email"),
        UniqueConstraint("account_id", "external_id"),
    )

    account_id: Mapped[uuid.UUID] = account_fk()
    name: Mapped[str] = mapped_column(Text)
    company: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    status: Mapped[LeadStatus] = mapped_column(vocabulary(LeadStatus, 16), default=LeadStatus.new)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    value: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    converted_at: Mapped[datetime | None]
    converted_person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"))
    converted_organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL")
    )
    converted_deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"))
    deleted_at: Mapped[datetime | None]
    # The id the lead has in the system it was imported from: re-importing the same file updates, never doubles.
    external_id: Mapped[str | None] = mapped_column(Text)


class Note(Id, Created, Provenance, Base):
    """A note on a person, organization, deal and/or lead (a converted lead's notes gain its new records)."""

    __tablename__ = "notes"

    account_id: Mapped[uuid.UUID] = account_fk()
    content: Mapped[str] = mapped_column(Text)
    person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id", ondelete="SET NULL"), index=True)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="SET NULL"), index=True
    )
    deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"), index=True)
    lead_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"), index=True)


class OrganizationRelationKind(enum.StrEnum):
    parent = "parent"  # `organization_id` is the parent of `related_organization_id`
    related = "related"


class OrganizationRelation(Id, Created, Base):
    """Two organizations related to each other; stored once, shown from both sides."""

    __tablename__ = "organization_relations"
    __table_args__ = (
        UniqueConstraint("account_id", "organization_id", "related_organization_id"),
        Index("ix_organization_relations_related", "related_organization_id"),
    )

    account_id: Mapped[uuid.UUID] = account_fk()
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    related_organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    kind: Mapped[OrganizationRelationKind] = mapped_column(vocabulary(OrganizationRelationKind, 16))
    created_by: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class WebhookEvent(enum.StrEnum):
    """What a webhook subscription can receive (the payloads are in shared.events)."""

    message_stored = "message.stored"
    thread_linked = "thread.linked"
    person_created = "person.created"
    disambiguation_created = "disambiguation.created"
    message_held = "message.held"
    # A draft reached this status (named after it): a teammate asks the owner, the owner decides, the relay sends.
    draft_pending_approval = "draft.pending_approval"
    draft_approved = "draft.approved"
    draft_rejected = "draft.rejected"
    draft_sent = "draft.sent"
    draft_failed = "draft.failed"


class WebhookSubscription(Id, Created, Base):
    __tablename__ = "webhook_subscriptions"

    account_id: Mapped[uuid.UUID] = account_fk()
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[WebhookEvent]] = mapped_column(ARRAY(TextVocabulary(WebhookEvent)))
    # Kept readable (not hashed) because every delivery is signed with it.
    secret: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(server_default=text("true"))


class WebhookDeliveryStatus(enum.StrEnum):
    pending = "pending"  # waiting for its (next) attempt at next_attempt_at
    succeeded = "succeeded"
    failed = "failed"  # every attempt failed; can be redelivered through the API


class WebhookDelivery(Id, Created, Base):
    """The transactional outbox of webhooks: written in the transaction that made the event, sent after it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The sweep reads only what is due; a partial index keeps that cheap however long the log grows.
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at"),
    )

    account_id: Mapped[uuid.UUID] = account_fk()
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event: Mapped[WebhookEvent] = mapped_column(vocabulary(WebhookEvent, 64))
    # The same for every subscription that receives this event: receivers deduplicate on it.
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[WebhookDeliveryStatus] = mapped_column(
        vocabulary(WebhookDeliveryStatus, 16), default=WebhookDeliveryStatus.pending
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    delivered_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # One entry per attempt: {"at", "status_code", "error", "duration_ms"}; bounded by the retry limit.
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(server_default=text("'[]'::jsonb"))


class CustomFieldType(enum.StrEnum):
    text = "text"
    number = "number"
    date = "date"
    option = "option"  # one of `options`


class CustomFieldEntity(enum.StrEnum):
    """The records an account can add custom fields to."""

    deal = "deal"
    person = "person"
    organization = "organization"


class CustomFieldDefinition(Id, Created, Base):
    """A field an account adds to its deals, persons or organizations; values live in their `custom_fields`."""

    __tablename__ = "custom_field_definitions"
    __table_args__ = (UniqueConstraint("account_id", "entity", "key"),)

    account_id: Mapped[uuid.UUID] = account_fk()
    entity: Mapped[CustomFieldEntity] = mapped_column(vocabulary(CustomFieldEntity, 16))
    # Stable and URL-safe: the JSON key of the value, the `custom.<key>` filter and the CSV column `custom.<key>`.
    key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text)
    type: Mapped[CustomFieldType] = mapped_column(vocabulary(CustomFieldType, 16))
    options: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))


class DraftStatus(enum.StrEnum):
    draft = "draft"  # being written; editable
    pending_approval = "pending_approval"  # submitted; waits for the thread owner's approval
    approved = "approved"  # queued for the relay (retrying after a failure: `last_error` says why)
    sent = "sent"
    failed = "failed"  # every attempt failed, or the relay refused it for good; can be retried
    rejected = "rejected"  # the owner said no; editing makes it a draft again


class Draft(Id, Created, Base):
    """A reply prepared in a thread. Nothing leaves before the owner approves it; the row is never lost."""

    __tablename__ = "drafts"
    __table_args__ = (
        # The send sweep reads only what waits for the relay.
        Index("ix_drafts_due", "next_attempt_at", postgresql_where=text("status = 'approved'")),
        Index("ix_drafts_account_id_thread_id", "account_id", "thread_id"),
    )

    account_id: Mapped[uuid.UUID] = account_fk()
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    # Whom the reply is sent as; the owner who approves it.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Who wrote it (a teammate's user, or None for an integration's account-wide token).
    author_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    author_token_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    to: Mapped[list[str]] = mapped_column(ARRAY(Text))
    cc: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    bcc: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    # Normalized Message-IDs (no angle brackets) of the message replied to and the thread's chain.
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    # Fixed when the draft is made, so every attempt sends the same message and its copy deduplicates.
    message_id_header: Mapped[str] = mapped_column(Text, unique=True)
    status: Mapped[DraftStatus] = mapped_column(vocabulary(DraftStatus, 24), default=DraftStatus.draft)
    submitted_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    decided_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # One entry per attempt: {"at", "error"}; bounded by the retry limit.
    attempt_log: Mapped[list[dict[str, Any]]] = mapped_column(server_default=text("'[]'::jsonb"))
    sent_at: Mapped[datetime | None]
    # The copy handed to the matcher, which threads it like the user's own BCC.
    sent_inbound_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("inbound_messages.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
