"""The deal chooser: pending questions "which deal is this thread about?", and linking a thread to a deal.

A choice is stored on the thread (`deal_rule` user-choice / user-declined), which the matcher honours for every
later message of the thread; the thread's mail then shows on the deal's timeline and files at once, because those
are derived from `threads.deal_id` at read time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.access import deal_visible
from services.api.deps import Caller
from services.api.mailbox.service import get_thread, thread_visible
from services.api.pagination import page_rows, paginate
from services.api.problems import conflict, invalid, not_found
from shared.events import ThreadLinked, emit
from shared.models import Deal, Disambiguation, DisambiguationStatus, Thread, ThreadDealRule


def list_disambiguations(
    session: Session,
    caller: Caller,
    status: DisambiguationStatus | None,
    user_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Disambiguation], str | None]:
    query = (
        select(Disambiguation)
        .join(Thread, Thread.id == Disambiguation.thread_id)
        .where(Disambiguation.account_id == caller.account_id, thread_visible(caller))
    )
    if status is not None:
        query = query.where(Disambiguation.status == status)
    if user_id is not None:
        query = query.where(Disambiguation.user_id == user_id)
    rows = session.scalars(paginate(query, Disambiguation.created_at, Disambiguation.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda d: (d.created_at, d.id))


def get_disambiguation(
    session: Session, caller: Caller, disambiguation_id: uuid.UUID, *, for_update: bool = False
) -> Disambiguation:
    query = (
        select(Disambiguation)
        .join(Thread, Thread.id == Disambiguation.thread_id)
        .where(
            Disambiguation.account_id == caller.account_id,
            Disambiguation.id == disambiguation_id,
            thread_visible(caller),
        )
    )
    found = session.scalars(query.with_for_update(of=Disambiguation) if for_update else query).one_or_none()
    if found is None:
        raise not_found("Disambiguation")
    return found


def candidate_deals(session: Session, caller: Caller, items: list[Disambiguation]) -> dict[str, Deal]:
    ids = {uuid.UUID(c["deal_id"]) for d in items for c in d.candidates if _is_uuid(c.get("deal_id"))}
    deals = session.scalars(
        select(Deal).where(Deal.account_id == caller.account_id, Deal.id.in_(ids), deal_visible(caller))
    ).all()
    return {str(d.id): d for d in deals}


def resolve(
    session: Session, caller: Caller, disambiguation_id: uuid.UUID, deal_id: uuid.UUID | None
) -> Disambiguation:
    disambiguation = get_disambiguation(session, caller, disambiguation_id, for_update=True)
    if disambiguation.status != DisambiguationStatus.pending:
        raise conflict("This question was already answered; change the thread's deal instead (PATCH the thread).")
    link_thread(session, caller, disambiguation.thread_id, deal_id)
    return disambiguation


def link_thread(session: Session, caller: Caller, thread_id: uuid.UUID, deal_id: uuid.UUID | None) -> Thread:
    """The user's decision for the whole thread: this deal, or none. Answers any pending question about it."""
    # The thread row lock orders us with the matcher, which links threads under the same lock.
    thread = get_thread(session, caller, thread_id, for_update=True)
    if (
        deal_id is not None
        and session.scalar(
            select(Deal.id).where(
                Deal.account_id == caller.account_id,
                Deal.id == deal_id,
                Deal.deleted_at.is_(None),
                deal_visible(caller),
            )
        )
        is None
    ):
        raise invalid("deal_id", "no such deal in this account")
    previous = thread.deal_id
    thread.deal_id = deal_id
    thread.deal_rule = ThreadDealRule.user_choice if deal_id is not None else ThreadDealRule.user_declined
    thread.deal_linked_by_message_id = None
    now = datetime.now(UTC)
    for pending in session.scalars(
        select(Disambiguation)
        .where(
            Disambiguation.account_id == caller.account_id,
            Disambiguation.thread_id == thread.id,
            Disambiguation.status == DisambiguationStatus.pending,
        )
        .with_for_update()
    ):
        pending.status = DisambiguationStatus.resolved
        pending.resolved_deal_id = deal_id
        pending.resolved_at = now
    emit(
        session,
        caller.account_id,
        ThreadLinked(
            thread_id=thread.id,
            deal_id=deal_id,
            previous_deal_id=previous,
            deal_rule=thread.deal_rule,
            user_id=caller.user_id,
        ),
    )
    return thread


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
