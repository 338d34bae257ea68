"""Timelines: e-mail, activities, notes and deal events of a person, organization, deal or lead, newest first.

One UNION over the sources is paginated on (time, id) in SQL, so pages are exact whatever the mix; the page's rows
are then loaded per kind. Which mail belongs to whom comes from mailbox.service (derived links). What happens on
a deal also shows on its person's and organization's timelines; nothing of a deal the caller may not see does.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from services.api.access import deal_id_visible, deal_visible
from services.api.deps import Caller
from services.api.mailbox.service import Owner, messages_of, require_owner
from services.api.pagination import page_rows, paginate
from shared.models import Activity, Attachment, Deal, DealEvent, Lead, Message, Note, Person, Thread


@dataclass(frozen=True)
class TimelineRow:
    kind: str
    id: uuid.UUID
    at: datetime


@dataclass(frozen=True)
class TimelinePage:
    rows: list[TimelineRow]
    next_cursor: str | None
    messages: dict[uuid.UUID, Message]
    attachment_counts: dict[uuid.UUID, int]
    deal_ids: dict[uuid.UUID, uuid.UUID | None]
    activities: dict[uuid.UUID, Activity]
    notes: dict[uuid.UUID, Note]
    events: dict[uuid.UUID, DealEvent]
    deal_titles: dict[uuid.UUID, str]


def _deals_of(caller: Caller, owner: Owner, owner_id: uuid.UUID) -> Select[uuid.UUID]:
    """The deals whose happenings show on the owner's timeline (for a lead: the deal it was converted into)."""
    account_id = caller.account_id
    if owner is Owner.deal:
        owned: ColumnElement[bool] = Deal.id == owner_id
    elif owner is Owner.person:
        owned = Deal.person_id == owner_id
    elif owner is Owner.organization:
        members = select(Person.id).where(Person.account_id == account_id, Person.organization_id == owner_id)
        owned = or_(Deal.organization_id == owner_id, Deal.person_id.in_(members))
    else:
        owned = Deal.id.in_(select(Lead.converted_deal_id).where(Lead.account_id == account_id, Lead.id == owner_id))
    return select(Deal.id).where(Deal.account_id == account_id, owned, deal_visible(caller))


def _linked(
    caller: Caller, owner: Owner, owner_id: uuid.UUID, model: type[Activity] | type[Note]
) -> ColumnElement[bool]:
    """Activities or notes of the owner, and of the owner's deals."""
    account_id = caller.account_id
    if owner is Owner.lead:
        direct: ColumnElement[bool] = model.lead_id == owner_id
    elif owner is Owner.person:
        direct = model.person_id == owner_id
    elif owner is Owner.organization:
        members = select(Person.id).where(Person.account_id == account_id, Person.organization_id == owner_id)
        direct = or_(model.organization_id == owner_id, model.person_id.in_(members))
    else:
        direct = model.deal_id == owner_id
    if owner is not Owner.lead:
        direct = or_(direct, model.deal_id.in_(_deals_of(caller, owner, owner_id)))
    return direct & deal_id_visible(caller, model.deal_id)


def timeline(
    session: Session, caller: Caller, owner: Owner, owner_id: uuid.UUID, cursor: str | None, limit: int
) -> TimelinePage:
    require_owner(session, caller, owner, owner_id)
    account_id = caller.account_id
    merged = union_all(
        select(
            literal("message").label("kind"),
            Message.id.label("id"),
            func.coalesce(Message.sent_at, Message.created_at).label("at"),
        ).where(Message.account_id == account_id, messages_of(caller, owner, owner_id)),
        select(
            literal("activity").label("kind"),
            Activity.id.label("id"),
            func.coalesce(Activity.due_at, Activity.created_at).label("at"),
        ).where(Activity.account_id == account_id, _linked(caller, owner, owner_id, Activity)),
        select(
            literal("note").label("kind"),
            Note.id.label("id"),
            Note.created_at.label("at"),
        ).where(Note.account_id == account_id, _linked(caller, owner, owner_id, Note)),
        select(
            literal("deal_event").label("kind"),
            DealEvent.id.label("id"),
            DealEvent.created_at.label("at"),
        ).where(DealEvent.account_id == account_id, DealEvent.deal_id.in_(_deals_of(caller, owner, owner_id))),
    ).subquery("timeline")
    query = select(merged.c.kind, merged.c.id, merged.c.at)
    found = [
        TimelineRow(kind=kind, id=row_id, at=at)
        for kind, row_id, at in session.execute(paginate(query, merged.c.at, merged.c.id, cursor, limit)).tuples()
    ]
    rows, next_cursor = page_rows(found, limit, lambda r: (r.at, r.id))
    ids: dict[str, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        ids[row.kind].append(row.id)

    messages = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids["message"])))}
    attachment_counts = dict(
        session.execute(
            select(Attachment.message_id, func.count())
            .where(Attachment.message_id.in_(ids["message"]))
            .group_by(Attachment.message_id)
        )
        .tuples()
        .all()
    )
    deal_ids = dict(
        session.execute(
            select(Thread.id, Thread.deal_id).where(Thread.id.in_({m.thread_id for m in messages.values()}))
        )
        .tuples()
        .all()
    )
    activities = {a.id: a for a in session.scalars(select(Activity).where(Activity.id.in_(ids["activity"])))}
    notes = {n.id: n for n in session.scalars(select(Note).where(Note.id.in_(ids["note"])))}
    events = {e.id: e for e in session.scalars(select(DealEvent).where(DealEvent.id.in_(ids["deal_event"])))}
    deal_titles = dict(
        session.execute(select(Deal.id, Deal.title).where(Deal.id.in_({e.deal_id for e in events.values()})))
        .tuples()
        .all()
    )
    return TimelinePage(
        rows, next_cursor, messages, attachment_counts, deal_ids, activities, notes, events, deal_titles
    )
