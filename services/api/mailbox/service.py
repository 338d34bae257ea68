"""Mailbox queries: threads, messages, attachments, raw mail, and which messages belong to a person,
organization or deal. Every other domain that needs "the mail of X" (files, timelines) asks here.

Links are derived at read time (a deal's mail = the messages of threads whose deal is it; a person's = messages
linked through message_persons; an organization's = its persons' messages), so a link made later — e.g. the user
choosing a thread's deal — shows up everywhere at once, without rewriting anything.
"""

from __future__ import annotations

import enum
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    CompoundSelect,
    Select,
    Text,
    Uuid,
    and_,
    any_,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased
from sqlalchemy.types import TypeEngine

from services.api.access import deal_id_visible, deal_visible
from services.api.deps import Caller
from services.api.pagination import decode_feed_cursor, encode_feed_cursor, page_rows, paginate
from services.api.problems import not_found
from shared import directory
from shared.db import WRITES_NO_MESSAGES
from shared.models import (
    Attachment,
    AuthSummary,
    Deal,
    Direction,
    InboundMessage,
    Lead,
    Message,
    MessageKind,
    MessagePerson,
    Organization,
    Person,
    PersonEmail,
    Thread,
    ThreadParticipant,
    ThreadVisibility,
    User,
)


class Owner(enum.StrEnum):
    person = "person"
    organization = "organization"
    deal = "deal"
    lead = "lead"


# --- visibility ------------------------------------------------------------------------------------------------


def thread_visible(caller: Caller) -> ColumnElement[bool]:
    """Account-wide tokens see every thread; a user's token sees the threads with the user's own mail, and the
    shared threads that are not linked to a deal hidden from the user (private, or in a pipeline not theirs)."""
    if caller.user_id is None:
        return true()
    own = aliased(Message)
    return or_(
        and_(Thread.visibility == ThreadVisibility.shared, deal_id_visible(caller, Thread.deal_id)),
        exists().where(own.thread_id == Thread.id, own.user_id == caller.user_id),
    )


def message_visible(caller: Caller) -> ColumnElement[bool]:
    if caller.user_id is None:
        return true()
    return Message.thread_id.in_(
        select(Thread.id).where(Thread.account_id == caller.account_id, thread_visible(caller))
    )


def shown_deal_ids(
    session: Session, caller: Caller, deal_ids: dict[uuid.UUID, uuid.UUID | None]
) -> dict[uuid.UUID, uuid.UUID | None]:
    """`{key: deal id}` with the deals hidden from the caller replaced by None: a user sees a thread with their own
    mail in it even when its deal is in a pipeline not theirs (or private to someone else), but not which deal."""
    if caller.user_id is None:
        return deal_ids
    linked = {d for d in deal_ids.values() if d is not None}
    visible = (
        set(session.scalars(select(Deal.id).where(Deal.id.in_(linked), deal_visible(caller)))) if linked else set()
    )
    return {key: deal_id if deal_id in visible else None for key, deal_id in deal_ids.items()}


def messages_of(caller: Caller, owner: Owner, owner_id: uuid.UUID) -> ColumnElement[bool]:
    """A condition on Message: it belongs to this person / organization / deal (and the caller may see it)."""
    account_id = caller.account_id
    if owner is Owner.person:
        linked = select(MessagePerson.message_id).where(
            MessagePerson.account_id == account_id, MessagePerson.person_id == owner_id
        )
        return Message.id.in_(linked) & message_visible(caller)
    if owner is Owner.organization:
        linked = (
            select(MessagePerson.message_id)
            .join(Person, Person.id == MessagePerson.person_id)
            .where(MessagePerson.account_id == account_id, Person.organization_id == owner_id)
        )
        return Message.id.in_(linked) & message_visible(caller)
    if owner is Owner.lead:
        return Message.thread_id.in_(lead_threads(account_id, owner_id)) & message_visible(caller)
    threads = select(Thread.id).where(Thread.account_id == account_id, Thread.deal_id == owner_id)
    return Message.thread_id.in_(threads) & message_visible(caller)


def lead_threads(account_id: uuid.UUID, lead_id: uuid.UUID) -> CompoundSelect[uuid.UUID]:
    """A lead's threads: mailed to its `+lead-<id>` sub-address, or with its address among the participants."""
    address = select(Lead.email).where(Lead.account_id == account_id, Lead.id == lead_id).scalar_subquery()
    return (
        select(Thread.id)
        .where(Thread.account_id == account_id, Thread.lead_id == lead_id)
        .union(
            select(ThreadParticipant.thread_id).where(
                ThreadParticipant.account_id == account_id, ThreadParticipant.address == address
            )
        )
    )


def require_owner(session: Session, caller: Caller, owner: Owner, owner_id: uuid.UUID) -> None:
    """404 unless the person / organization / deal / lead is the caller's (deleted ones keep their history) and,
    for a deal, one the caller may see."""
    models: dict[Owner, type[Person] | type[Organization] | type[Deal] | type[Lead]] = {
        Owner.person: Person,
        Owner.organization: Organization,
        Owner.deal: Deal,
        Owner.lead: Lead,
    }
    model = models[owner]
    query = select(model.id).where(model.account_id == caller.account_id, model.id == owner_id)
    if owner is Owner.deal:
        query = query.where(deal_visible(caller))
    found = session.scalar(query)
    if found is None:
        raise not_found(owner.value.capitalize())


# --- threads ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadFilters:
    person_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    has_deal: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None


def thread_activity() -> ColumnElement[datetime]:
    return func.coalesce(Thread.last_message_at, Thread.created_at)


def list_threads(
    session: Session, caller: Caller, filters: ThreadFilters, cursor: str | None, limit: int
) -> tuple[list[Thread], str | None]:
    """Most recently active first."""
    account_id = caller.account_id
    query = select(Thread).where(Thread.account_id == account_id, thread_visible(caller))

    def having_messages(condition: ColumnElement[bool]) -> None:
        nonlocal query
        query = query.where(Thread.id.in_(select(Message.thread_id).where(Message.account_id == account_id, condition)))

    if filters.person_id is not None:
        having_messages(messages_of(caller, Owner.person, filters.person_id))
    if filters.organization_id is not None:
        having_messages(messages_of(caller, Owner.organization, filters.organization_id))
    if filters.user_id is not None:
        having_messages(Message.user_id == filters.user_id)
    if filters.deal_id is not None:
        query = query.where(Thread.deal_id == filters.deal_id)
    if filters.has_deal is not None:
        query = query.where(Thread.deal_id.is_not(None) if filters.has_deal else Thread.deal_id.is_(None))
    if filters.since is not None:
        query = query.where(thread_activity() >= filters.since)
    if filters.until is not None:
        query = query.where(thread_activity() < filters.until)
    if filters.q:
        # Substring search (ILIKE) over subjects and plain-text bodies: exact, and fine at mailbox sizes; a
        # full-text index is the step up when accounts grow.
        pattern = "%" + filters.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        matching = select(Message.thread_id).where(
            Message.account_id == account_id,
            or_(Message.subject.ilike(pattern, escape="\\"), Message.text_body.ilike(pattern, escape="\\")),
        )
        query = query.where(or_(Thread.subject.ilike(pattern, escape="\\"), Thread.id.in_(matching)))
    rows = session.scalars(paginate(query, thread_activity(), Thread.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda t: (t.last_message_at or t.created_at, t.id))


def get_thread(session: Session, caller: Caller, thread_id: uuid.UUID, *, for_update: bool = False) -> Thread:
    query = select(Thread).where(Thread.account_id == caller.account_id, Thread.id == thread_id, thread_visible(caller))
    thread = session.scalars(query.with_for_update(of=Thread) if for_update else query).one_or_none()
    if thread is None:
        raise not_found("Thread")
    return thread


@dataclass(frozen=True)
class ThreadStats:
    message_count: int
    person_ids: list[str]
    first_message_at: datetime | None


def thread_stats(session: Session, threads: Sequence[Thread]) -> dict[uuid.UUID, ThreadStats]:
    ids = [t.id for t in threads]
    counts: dict[uuid.UUID, tuple[int, datetime | None]] = {
        row.thread_id: (int(row.message_count), row.first)
        for row in session.execute(
            select(
                Message.thread_id,
                func.count().label("message_count"),
                func.min(func.coalesce(Message.sent_at, Message.created_at)).label("first"),
            )
            .where(Message.thread_id.in_(ids))
            .group_by(Message.thread_id)
        )
    }
    persons: dict[uuid.UUID, set[str]] = defaultdict(set)
    for row in session.execute(
        select(Message.thread_id, MessagePerson.person_id)
        .join(MessagePerson, MessagePerson.message_id == Message.id)
        .where(Message.thread_id.in_(ids))
        .distinct()
    ):
        persons[row.thread_id].add(str(row.person_id))
    return {
        t.id: ThreadStats(
            message_count=counts.get(t.id, (0, None))[0],
            person_ids=sorted(persons[t.id]),
            first_message_at=t.first_message_at or counts.get(t.id, (0, None))[1],
        )
        for t in threads
    }


def thread_messages(session: Session, caller: Caller, thread_id: uuid.UUID) -> list[MessageRow]:
    return _message_rows(
        session,
        _rendered_messages(caller)
        .where(Message.account_id == caller.account_id, Message.thread_id == thread_id)
        .order_by(Message.sent_at.asc().nulls_last(), Message.created_at, Message.id),
    )


def set_visibility(thread: Thread, visibility: ThreadVisibility) -> None:
    thread.visibility = visibility


# --- messages --------------------------------------------------------------------------------------------------


class MessageRow(TypedDict):
    """A message as its page renders it: its columns and its links, all but the persons of its addresses
    (`persons_by_address`). Ids come as text, as the API shows them."""

    id: str
    thread_id: str
    user_id: str
    message_id_header: str
    in_reply_to: str | None
    references: list[str]
    subject: str | None
    from_name: str | None
    from_address: str | None
    to: list[dict[str, Any]]
    cc: list[dict[str, Any]]
    sent_at: datetime | None
    direction: Direction
    kind: MessageKind
    kind_reason: str | None
    forwarded_by_user_id: str | None
    forwarded_at: datetime | None
    forward_confidence: float | None
    auth_summary: AuthSummary | None
    auth_results: dict[str, Any] | None
    text_body: str | None
    html_body: str | None
    new_text: str | None
    defects: list[str]
    feed_xid: int
    created_at: datetime
    # The links, read by subqueries of the same statement: a page takes two statements (this one and
    # `persons_by_address`), not one per kind of link.
    attachments: list[dict[str, Any]] | None  # AttachmentOut's fields, in the order the sender attached them
    person_ids: list[str] | None  # sorted
    received_at: datetime  # when the first delivery arrived; when stored, for mail that came otherwise
    deal_id: str | None  # the thread's deal; None also when it is hidden from the caller


def _rendered_messages(caller: Caller) -> Select[*tuple[Any, ...]]:
    """Messages as `MessageRow`s, their links read by correlated subqueries; the caller adds the conditions (the
    account, the caller's visibility) and the order."""
    account_id = caller.account_id
    attachments = (
        select(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_object(
                        "id",
                        Attachment.id,
                        "message_id",
                        Attachment.message_id,
                        "filename",
                        Attachment.filename,
                        "content_type",
                        Attachment.content_type,
                        "size",
                        Attachment.size,
                        "sha256",
                        Attachment.sha256,
                        "content_id",
                        Attachment.content_id,
                    ),
                    # One message's attachments share a creation time (one transaction); the position orders them.
                    Attachment.created_at,
                    Attachment.position,
                    Attachment.id,
                )
            )
        )
        .where(Attachment.account_id == account_id, Attachment.message_id == Message.id)
        .scalar_subquery()
    )
    # Ordered as uuids, which is the order of their text (fixed-width lowercase hex) in any collation.
    person_ids = (
        select(
            func.array_agg(aggregate_order_by(MessagePerson.person_id.distinct(), MessagePerson.person_id)).cast(
                ARRAY(Text)
            )
        )
        .where(MessagePerson.account_id == account_id, MessagePerson.message_id == Message.id)
        .scalar_subquery()
    )
    first_received = (
        select(func.min(InboundMessage.received_at))
        .where(InboundMessage.account_id == account_id, InboundMessage.message_id == Message.id)
        .scalar_subquery()
    )
    deal_id = select(Thread.deal_id).where(Thread.account_id == account_id, Thread.id == Message.thread_id)
    if caller.user_id is not None:
        # As in `shown_deal_ids`: a deal hidden from the caller is shown as none.
        deal_id = deal_id.join(Deal, Deal.id == Thread.deal_id).where(
            Deal.account_id == account_id, deal_visible(caller)
        )
    # Ids as text, the form the API shows them in: cheaper than a uuid.UUID per id and its str() per row.
    return select(
        Message.id.cast(Text).label("id"),
        Message.thread_id.cast(Text).label("thread_id"),
        Message.user_id.cast(Text).label("user_id"),
        Message.message_id_header,
        Message.in_reply_to,
        Message.references,
        Message.subject,
        Message.from_name,
        Message.from_address,
        Message.to,
        Message.cc,
        Message.sent_at,
        Message.direction,
        Message.kind,
        Message.kind_reason,
        Message.forwarded_by_user_id.cast(Text).label("forwarded_by_user_id"),
        Message.forwarded_at,
        Message.forward_confidence,
        Message.auth_summary,
        Message.auth_results,
        Message.text_body,
        Message.html_body,
        Message.new_text,
        Message.defects,
        Message.feed_xid,
        Message.created_at,
        attachments.label("attachments"),
        person_ids.label("person_ids"),
        func.coalesce(first_received, Message.created_at).label("received_at"),
        deal_id.scalar_subquery().cast(Text).label("deal_id"),
    )


def _message_rows(session: Session, query: Select[*tuple[Any, ...]]) -> list[MessageRow]:
    # Read-only mappings with `MessageRow`'s keys (SQLAlchemy types a select this wide as a tuple of Any). Keys, not
    # a Row's attributes: reading an attribute of a Row costs four times as much, and a page reads thousands.
    return cast(list[MessageRow], list(session.execute(query).mappings().all()))


def list_messages(
    session: Session, caller: Caller, thread_id: uuid.UUID | None, cursor: str | None, limit: int
) -> tuple[list[MessageRow], str | None]:
    query = _rendered_messages(caller).where(Message.account_id == caller.account_id, message_visible(caller))
    if thread_id is not None:
        query = query.where(Message.thread_id == thread_id)
    rows = _message_rows(session, paginate(query, Message.created_at, Message.id, cursor, limit))
    return page_rows(rows, limit, lambda m: (m["created_at"], uuid.UUID(m["id"])))


# Below this transaction id, every transaction that may store mail has ended (committed or rolled back): no message
# can still appear there. The oldest one still running, of those that may store mail: not one in another database
# of the server (transaction ids are the server's), nor one that declared it stores none (an import); past the
# newest completed one when none is running. Only a running transaction's own session can say it stores no mail,
# so one that ended since the snapshot is still counted: that errs on the side of waiting.
_FEED_HORIZON = text(
    "(SELECT coalesce("
    " (SELECT min(running) FROM pg_snapshot_xip(pg_current_snapshot()) AS running"
    "  WHERE NOT EXISTS (SELECT FROM pg_stat_activity AS backend WHERE backend.backend_xid = running::xid"
    "   AND (backend.datname IS DISTINCT FROM current_database() OR backend.application_name = :writes_no_messages))),"
    " pg_snapshot_xmax(pg_current_snapshot())))"
).bindparams(writes_no_messages=WRITES_NO_MESSAGES)


def message_feed(session: Session, caller: Caller, cursor: str | None, limit: int) -> tuple[list[MessageRow], str]:
    """The account's messages in the order they became visible, oldest first, from `cursor` on; and the cursor to
    read on from (the same one when nothing new is there yet).

    `GET /v1/messages` is ordered by when each message's transaction began, so a message whose transaction
    commits late appears below the top, where a client polling the top would miss it. The feed is ordered by
    transaction id and stops short of the oldest transaction still running, so what a client has read past never
    changes: every message shows up exactly once, at most one running transaction later.
    """
    query = _rendered_messages(caller).where(
        Message.account_id == caller.account_id, message_visible(caller), Message.feed_xid < _FEED_HORIZON
    )
    if cursor is not None:
        after_transaction, after_id = decode_feed_cursor(cursor)
        query = query.where(
            tuple_(Message.feed_xid, Message.id)
            > tuple_(text("CAST(:after_transaction AS xid8)"), literal(after_id, Uuid())).self_group()
        ).params(after_transaction=str(after_transaction))
    rows = _message_rows(session, query.order_by(Message.feed_xid, Message.id).limit(limit))
    if rows:
        return rows, encode_feed_cursor(rows[-1]["feed_xid"], uuid.UUID(rows[-1]["id"]))
    return rows, cursor or encode_feed_cursor(0, uuid.UUID(int=0))


def get_message(session: Session, caller: Caller, message_id: uuid.UUID) -> MessageRow:
    rows = _message_rows(
        session,
        _rendered_messages(caller).where(
            Message.account_id == caller.account_id, Message.id == message_id, message_visible(caller)
        ),
    )
    if not rows:
        raise not_found("Message")
    return rows[0]


def raw_message(session: Session, caller: Caller, message_id: uuid.UUID, bcc_domain: str) -> bytes:
    """The bytes as the gateway accepted them (the first delivery, if it came more than once), with the Smart-BCC
    addresses the caller may not see hidden: a forwarded reply's copy is addressed to its forwarder's."""
    visible = session.scalar(
        select(Message.id).where(
            Message.account_id == caller.account_id, Message.id == message_id, message_visible(caller)
        )
    )
    if visible is None:
        raise not_found("Message")
    raw = session.scalars(
        select(InboundMessage.raw)
        .where(InboundMessage.account_id == caller.account_id, InboundMessage.message_id == message_id)
        .order_by(InboundMessage.received_at, InboundMessage.id)
        .limit(1)
    ).first()
    if raw is None:
        raise not_found("Raw message")
    written = directory.bcc_local_parts_in(raw, bcc_domain)
    if not written:
        return raw
    owners = session.execute(
        select(User.bcc_local_part, User.id).where(
            User.account_id == caller.account_id, _among(User.bcc_local_part, written, Text())
        )
    ).tuples()
    # Another account's user's address, or one no longer anybody's, is hidden too.
    shown = {local_part for local_part, user_id in owners if caller.sees_bcc_address_of(user_id)}
    return directory.without_bcc_local_parts(raw, bcc_domain, written - shown)


def persons_by_address(session: Session, caller: Caller, addresses: Iterable[str]) -> dict[str, str]:
    """`{address: person id}` for those of the addresses that are a person's."""
    return dict(
        session.execute(
            select(PersonEmail.address, PersonEmail.person_id.cast(Text)).where(
                PersonEmail.account_id == caller.account_id, _among(PersonEmail.address, addresses, Text())
            )
        )
        .tuples()
        .all()
    )


def _among(
    column: InstrumentedAttribute[Any], values: Iterable[object], item_type: TypeEngine[Any]
) -> ColumnElement[bool]:
    """`column = ANY(:values)`: one array parameter, so the statement's text (and psycopg's prepared plan) is the
    same whatever the number of values, where `IN` would spell out a parameter for each."""
    among: ColumnElement[bool] = column == any_(literal(list(values), ARRAY(item_type)))
    return among


# --- attachments and files -------------------------------------------------------------------------------------


def get_attachment(session: Session, caller: Caller, attachment_id: uuid.UUID) -> Attachment:
    attachment = session.scalars(
        select(Attachment)
        .join(Message, Message.id == Attachment.message_id)
        .where(Attachment.account_id == caller.account_id, Attachment.id == attachment_id, message_visible(caller))
    ).one_or_none()
    if attachment is None:
        raise not_found("Attachment")
    return attachment


def files_query(caller: Caller, owner: Owner, owner_id: uuid.UUID) -> Select[Attachment, Message]:
    return (
        select(Attachment, Message)
        .join(Message, Message.id == Attachment.message_id)
        .where(Attachment.account_id == caller.account_id, messages_of(caller, owner, owner_id))
    )


def list_files(
    session: Session, caller: Caller, owner: Owner, owner_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[tuple[Attachment, Message]], str | None]:
    """Every attachment of every message linked to the owner, newest first."""
    require_owner(session, caller, owner, owner_id)
    query = files_query(caller, owner, owner_id)
    rows = [(a, m) for a, m in session.execute(paginate(query, Attachment.created_at, Attachment.id, cursor, limit))]
    return page_rows(rows, limit, lambda row: (row[0].created_at, row[0].id))
