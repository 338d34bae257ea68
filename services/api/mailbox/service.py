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
from typing import Any

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
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased
from sqlalchemy.types import TypeEngine

from services.api.access import deal_id_visible, deal_visible
from services.api.deps import Caller
from services.api.pagination import decode_feed_cursor, encode_feed_cursor, page_rows, paginate
from services.api.problems import not_found
from shared.models import (
    Attachment,
    Deal,
    InboundMessage,
    Lead,
    Message,
    MessagePerson,
    Organization,
    Person,
    PersonEmail,
    Thread,
    ThreadParticipant,
    ThreadVisibility,
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


def thread_messages(session: Session, caller: Caller, thread_id: uuid.UUID) -> list[Message]:
    return list(
        session.scalars(
            select(Message)
            .where(Message.account_id == caller.account_id, Message.thread_id == thread_id)
            .order_by(Message.sent_at.asc().nulls_last(), Message.created_at, Message.id)
        ).all()
    )


def set_visibility(thread: Thread, visibility: ThreadVisibility) -> None:
    thread.visibility = visibility


# --- messages --------------------------------------------------------------------------------------------------


def list_messages(
    session: Session, caller: Caller, thread_id: uuid.UUID | None, cursor: str | None, limit: int
) -> tuple[list[Message], str | None]:
    query = select(Message).where(Message.account_id == caller.account_id, message_visible(caller))
    if thread_id is not None:
        query = query.where(Message.thread_id == thread_id)
    rows = session.scalars(paginate(query, Message.created_at, Message.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda m: (m.created_at, m.id))


# Every transaction with a smaller id has ended (committed or rolled back): no message can still appear below it.
_FEED_HORIZON = text("pg_snapshot_xmin(pg_current_snapshot())")


def message_feed(session: Session, caller: Caller, cursor: str | None, limit: int) -> tuple[list[Message], str]:
    """The account's messages in the order they became visible, oldest first, from `cursor` on; and the cursor to
    read on from (the same one when nothing new is there yet).

    `GET /v1/messages` is ordered by when each message's transaction began, so a message whose transaction
    commits late appears below the top, where a client polling the top would miss it. The feed is ordered by
    transaction id and stops short of the oldest transaction still running, so what a client has read past never
    changes: every message shows up exactly once, at most one running transaction later.
    """
    query = select(Message).where(
        Message.account_id == caller.account_id, message_visible(caller), Message.feed_xid < _FEED_HORIZON
    )
    if cursor is not None:
        after_transaction, after_id = decode_feed_cursor(cursor)
        query = query.where(
            tuple_(Message.feed_xid, Message.id)
            > tuple_(text("CAST(:after_transaction AS xid8)"), literal(after_id, Uuid())).self_group()
        ).params(after_transaction=str(after_transaction))
    rows = list(session.scalars(query.order_by(Message.feed_xid, Message.id).limit(limit)).all())
    if rows:
        return rows, encode_feed_cursor(rows[-1].feed_xid, rows[-1].id)
    return rows, cursor or encode_feed_cursor(0, uuid.UUID(int=0))


def get_message(session: Session, caller: Caller, message_id: uuid.UUID) -> Message:
    message = session.scalars(
        select(Message).where(
            Message.account_id == caller.account_id, Message.id == message_id, message_visible(caller)
        )
    ).one_or_none()
    if message is None:
        raise not_found("Message")
    return message


def raw_message(session: Session, caller: Caller, message_id: uuid.UUID) -> bytes:
    """The bytes exactly as the gateway accepted them (the first delivery, if it came more than once)."""
    message = get_message(session, caller, message_id)
    raw = session.scalars(
        select(InboundMessage.raw)
        .where(InboundMessage.account_id == caller.account_id, InboundMessage.message_id == message.id)
        .order_by(InboundMessage.received_at, InboundMessage.id)
        .limit(1)
    ).first()
    if raw is None:
        raise not_found("Raw message")
    return raw


@dataclass(frozen=True)
class MessageLinks:
    attachments: dict[uuid.UUID, list[Attachment]]
    person_ids: dict[uuid.UUID, list[str]]
    persons_by_address: dict[str, uuid.UUID]
    deal_ids: dict[uuid.UUID, uuid.UUID | None]
    received_at: dict[uuid.UUID, datetime]


def message_links(session: Session, caller: Caller, messages: Sequence[Message]) -> MessageLinks:
    """Everything needed to render these messages, in five queries whatever their number."""
    account_id = caller.account_id
    ids = [m.id for m in messages]
    attachments: dict[uuid.UUID, list[Attachment]] = defaultdict(list)
    for attachment in session.scalars(
        # One message's attachments share a creation time (one transaction); the name keeps their order stable.
        select(Attachment)
        .where(Attachment.account_id == account_id, _among(Attachment.message_id, ids, Uuid()))
        .order_by(Attachment.created_at, Attachment.position, Attachment.id)
    ):
        attachments[attachment.message_id].append(attachment)
    person_ids: dict[uuid.UUID, set[str]] = defaultdict(set)
    for link in session.execute(
        select(MessagePerson.message_id, MessagePerson.person_id).where(
            MessagePerson.account_id == account_id, _among(MessagePerson.message_id, ids, Uuid())
        )
    ):
        person_ids[link.message_id].add(str(link.person_id))
    addresses = {
        address.lower()
        for m in messages
        for address in [m.from_address or "", *(a.get("address", "") for a in [*m.to, *m.cc])]
        if address
    }
    persons_by_address = dict(
        session.execute(
            select(PersonEmail.address, PersonEmail.person_id).where(
                PersonEmail.account_id == account_id, _among(PersonEmail.address, addresses, Text())
            )
        )
        .tuples()
        .all()
    )
    thread_ids = {m.thread_id for m in messages}
    deal_ids = shown_deal_ids(
        session,
        caller,
        dict(
            session.execute(
                select(Thread.id, Thread.deal_id).where(
                    Thread.account_id == account_id, _among(Thread.id, thread_ids, Uuid())
                )
            )
            .tuples()
            .all()
        ),
    )
    received: dict[uuid.UUID, datetime] = {}
    for row in session.execute(
        select(InboundMessage.message_id, func.min(InboundMessage.received_at))
        .where(InboundMessage.account_id == account_id, _among(InboundMessage.message_id, ids, Uuid()))
        .group_by(InboundMessage.message_id)
    ).tuples():
        if row[0] is not None:
            received[row[0]] = row[1]
    return MessageLinks(
        attachments=attachments,
        person_ids={k: sorted(v) for k, v in person_ids.items()},
        persons_by_address=persons_by_address,
        deal_ids=deal_ids,
        received_at=received,
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
