"""Which deal a thread belongs to."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Deal, DealStatus, Thread


def link_thread_to_deal(
    session: Session, account_id: uuid.UUID, thread_id: uuid.UUID, person_ids: set[uuid.UUID]
) -> uuid.UUID | None:
    """A thread keeps the deal it has; otherwise it gets the one open deal of its persons, if exactly one."""
    thread = session.scalars(
        select(Thread).where(Thread.account_id == account_id, Thread.id == thread_id).with_for_update()
    ).one()
    if thread.deal_id is not None or not person_ids:
        return thread.deal_id
    candidates = session.scalars(
        select(Deal.id).where(
            Deal.account_id == account_id,
            Deal.person_id.in_(person_ids),
            Deal.status == DealStatus.open.value,
        )
    ).all()
    if len(candidates) == 1:
        thread.deal_id = candidates[0]
    return thread.deal_id
