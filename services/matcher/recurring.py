"""Recurring deals: a won deal with a recurrence gets its successor when the next period comes due.

The worker's periodic sweep finds won deals whose next period has begun and no successor yet, and enqueues
`deal.recur` for each; the actor locks the deal, checks again, and opens the successor (same customer, value,
currency, owner, pipeline and custom fields — the plan — in the pipeline's first stage, expected to close on the
period's date). A unique constraint on (account, recurs_from_deal_id) makes "never twice" a database fact, however
many sweeps, workers or retries meet the same deal. The successor carries the recurrence on, so winning it
schedules the one after.

Periods count from the series' first won date (its anchor), so a series won on 31 January renews on 28 February,
31 March, 30 April… instead of drifting to the 28th.
"""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from shared.broker import ActorName, Queue, deal_recur
from shared.db import transaction
from shared.models import Deal, DealEvent, DealEventType, DealRecurrence, DealStatus, Stage

log = structlog.get_logger(__name__)

MONTHS = {DealRecurrence.monthly: 1, DealRecurrence.quarterly: 3, DealRecurrence.yearly: 12}
RECURRENCE_ACTOR = {"kind": "matcher", "name": "Mailroom recurring deals", "rule": "recurrence"}


def add_months(start: date, months: int) -> date:
    """`start` moved by whole months, on the same day or the month's last day when it is shorter."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Period:
    anchor: date
    index: int  # the successor's place in the series (the first won deal is 0)
    starts: date


def next_period(deal: Deal) -> Period | None:
    """The period the deal's successor covers; None when the deal does not recur (not won, no recurrence)."""
    if deal.recurrence not in MONTHS or deal.status != DealStatus.won or deal.won_at is None:
        return None
    anchor = deal.recurrence_anchor or deal.won_at.astimezone(UTC).date()
    index = (deal.recurrence_index or 0) + 1
    return Period(anchor=anchor, index=index, starts=add_months(anchor, MONTHS[deal.recurrence] * index))


def _candidates() -> Any:
    successor = aliased(Deal)
    return select(Deal).where(
        Deal.status == DealStatus.won,
        Deal.recurrence.is_not(None),
        Deal.deleted_at.is_(None),
        ~exists().where(successor.account_id == Deal.account_id, successor.recurs_from_deal_id == Deal.id),
    )


@dataclass
class Recurrences:
    sessions: sessionmaker[Session]
    broker: RedisBroker

    def sweep(self, *, today: date | None = None, limit: int = 10_000) -> int:
        """Enqueue `deal.recur` for every won deal whose next period has begun and that has no successor yet."""
        today = today or datetime.now(UTC).date()
        with transaction(self.sessions) as session:
            due = [
                deal.id
                for deal in session.scalars(_candidates().limit(limit))
                if (period := next_period(deal)) is not None and period.starts <= today
            ]
        for deal_id in due:
            self.broker.enqueue(deal_recur(deal_id))
        if due:
            log.info("recurring.sweep_enqueued", count=len(due))
        return len(due)

    def sweep_safely(self) -> None:
        try:
            self.sweep()
        except Exception:
            log.exception("recurring.sweep_failed")

    def recur(self, deal_id: uuid.UUID, *, today: date | None = None) -> str:
        """Open the successor of `deal_id` if its period has begun; safe to run any number of times."""
        today = today or datetime.now(UTC).date()
        try:
            with transaction(self.sessions) as session:
                deal = session.scalars(select(Deal).where(Deal.id == deal_id).with_for_update()).one_or_none()
                period = None if deal is None or deal.deleted_at is not None else next_period(deal)
                if deal is None or period is None or period.starts > today:
                    return "not-due"
                taken = session.scalar(
                    select(Deal.id).where(Deal.account_id == deal.account_id, Deal.recurs_from_deal_id == deal.id)
                )
                if taken is not None:
                    return "exists"
                successor = _successor(session, deal, period)
                session.add(successor)
                session.flush()
                session.add(
                    DealEvent(
                        account_id=deal.account_id,
                        deal_id=successor.id,
                        type=DealEventType.created,
                        data={
                            "title": successor.title,
                            "status": successor.status,
                            "recurs_from_deal_id": str(deal.id),
                            "period": period.starts.isoformat(),
                        },
                        actor=RECURRENCE_ACTOR,
                    )
                )
        except IntegrityError:
            return "exists"  # another worker opened it first; the constraint kept it to one
        log.info("recurring.deal_opened", deal_id=str(deal_id), successor_id=str(successor.id))
        return "created"


def _successor(session: Session, deal: Deal, period: Period) -> Deal:
    first_stage = None
    if deal.pipeline_id is not None:
        first_stage = session.scalar(
            select(Stage.id)
            .where(Stage.pipeline_id == deal.pipeline_id)
            .order_by(Stage.position, Stage.created_at)
            .limit(1)
        )
    return Deal(
        account_id=deal.account_id,
        title=deal.title,
        person_id=deal.person_id,
        organization_id=deal.organization_id,
        status=DealStatus.open,
        value=deal.value,
        currency=deal.currency,
        pipeline_id=deal.pipeline_id,
        stage_id=first_stage,
        expected_close_date=period.starts,
        owner_user_id=deal.owner_user_id,
        visibility=deal.visibility,
        custom_fields=dict(deal.custom_fields or {}),
        recurrence=deal.recurrence,
        recurs_from_deal_id=deal.id,
        recurrence_anchor=period.anchor,
        recurrence_index=period.index,
        created_by=RECURRENCE_ACTOR,
        updated_by=RECURRENCE_ACTOR,
    )


def register_recurring_actor(broker: RedisBroker, sessions: sessionmaker[Session]) -> Recurrences:
    recurrences = Recurrences(sessions=sessions, broker=broker)

    def recur(deal_id: str) -> None:
        with structlog.contextvars.bound_contextvars(deal_id=deal_id):
            recurrences.recur(uuid.UUID(deal_id))

    dramatiq.actor(
        broker=broker,
        actor_name=ActorName.deal_recur.value,
        queue_name=Queue.scheduled.value,
        # The next sweep enqueues it again if this attempt failed; retries here would only add noise.
        max_retries=0,
        time_limit=60_000,
    )(recur)
    return recurrences
