"""Revenue forecast and deal dynamics, computed in the database from deals, stages and recorded deal events.

Both honor deal visibility (restricted pipelines, private deals) like every other read of deals. Amounts are never
converted between currencies: a forecast is in one currency and names what it left out.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from services.api.access import deal_visible, pipeline_visible
from services.api.deps import Caller
from services.api.reports.schemas import (
    CurrencyTotal,
    DealDynamics,
    Forecast,
    ForecastRow,
    GroupBy,
    Move,
    Outcome,
    StageNow,
)
from shared.models import Deal, DealEvent, DealEventType, DealStatus, Pipeline, Stage, User

DEFAULT_CURRENCY = "EUR"
ZERO = Decimal("0.00")
CENT = Decimal("0.01")


def _open_deals(caller: Caller, pipeline_id: uuid.UUID | None, owner_id: uuid.UUID | None) -> list[Any]:
    conditions = [
        Deal.account_id == caller.account_id,
        Deal.status == DealStatus.open,
        Deal.deleted_at.is_(None),
        deal_visible(caller),
    ]
    if pipeline_id is not None:
        conditions.append(Deal.pipeline_id == pipeline_id)
    if owner_id is not None:
        conditions.append(Deal.owner_user_id == owner_id)
    return conditions


def forecast(
    session: Session,
    caller: Caller,
    *,
    currency: str | None,
    group_by: GroupBy,
    pipeline_id: uuid.UUID | None,
    owner_id: uuid.UUID | None,
) -> Forecast:
    conditions = _open_deals(caller, pipeline_id, owner_id)
    by_currency = {
        row.currency: CurrencyTotal(currency=row.currency, deals=row.deals, value=_money(row.value))
        for row in session.execute(
            select(Deal.currency, func.count().label("deals"), func.sum(Deal.value).label("value"))
            .where(*conditions, Deal.currency.is_not(None))
            .group_by(Deal.currency)
        )
    }
    if currency is None:
        # The currency most open deals are in (ties: alphabetical), so a report without parameters says something.
        ranked = sorted(by_currency.values(), key=lambda t: (-t.deals, t.currency))
        currency = ranked[0].currency if ranked else DEFAULT_CURRENCY
    weight = func.coalesce(Stage.probability, 100)
    month = func.to_char(Deal.expected_close_date, "YYYY-MM")
    group = Deal.pipeline_id if group_by == "pipeline" else Deal.owner_user_id
    rows = session.execute(
        select(
            month.label("month"),
            group.label("group_id"),
            func.count().label("deals"),
            func.coalesce(func.sum(Deal.value), 0).label("value"),
            func.coalesce(func.sum(Deal.value * weight / 100), 0).label("weighted"),
        )
        .select_from(Deal)
        .outerjoin(Stage, Stage.id == Deal.stage_id)
        .where(*conditions, Deal.currency == currency, Deal.expected_close_date.is_not(None))
        .group_by(month, group)
        .order_by(month, group)
    ).all()
    names = _group_names(session, group_by, {row.group_id for row in rows})
    undated = session.execute(
        select(func.count(), func.coalesce(func.sum(Deal.value), 0)).where(
            *conditions, Deal.currency == currency, Deal.expected_close_date.is_(None)
        )
    ).one()
    table = [
        ForecastRow(
            month=row.month,
            group_id=None if row.group_id is None else str(row.group_id),
            group_name=names.get(row.group_id, "No pipeline" if group_by == "pipeline" else "No owner"),
            deals=row.deals,
            value=_money(row.value),
            weighted_value=_money(row.weighted),
        )
        for row in rows
    ]
    return Forecast(
        currency=currency,
        group_by=group_by,
        months=_month_range([r.month for r in table]),
        rows=sorted(table, key=lambda r: (r.month, r.group_name)),
        total_value=sum((r.value for r in table), ZERO),
        total_weighted_value=sum((r.weighted_value for r in table), ZERO),
        undated=CurrencyTotal(currency=currency, deals=undated[0], value=_money(undated[1])),
        other_currencies=[t for c, t in sorted(by_currency.items()) if c != currency],
    )


def _group_names(session: Session, group_by: GroupBy, ids: set[uuid.UUID | None]) -> dict[uuid.UUID | None, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    if group_by == "pipeline":
        rows = session.execute(select(Pipeline.id, Pipeline.name).where(Pipeline.id.in_(wanted)))
        return {row.id: row.name for row in rows}
    users = session.execute(select(User.id, User.name, User.email).where(User.id.in_(wanted)))
    return {row.id: row.name or row.email for row in users}


def _month_range(months: list[str]) -> list[str]:
    """Every month from the first to the last, so gaps show as empty months."""
    if not months:
        return []
    year, month = map(int, min(months).split("-"))
    last = max(months)
    result = []
    while f"{year:04d}-{month:02d}" <= last:
        result.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return result


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(CENT)


def default_period(today: date | None = None) -> tuple[date, date]:
    today = today or datetime.now(UTC).date()
    return today.replace(day=1), today


def deal_dynamics(
    session: Session, caller: Caller, *, pipeline_id: uuid.UUID | None, start: date, end: date
) -> DealDynamics:
    pipelines = {
        row.id: row.name
        for row in session.execute(
            select(Pipeline.id, Pipeline.name).where(
                Pipeline.account_id == caller.account_id,
                pipeline_visible(caller),
                *([Pipeline.id == pipeline_id] if pipeline_id is not None else []),
            )
        )
    }
    stages = {
        row.id: row
        for row in session.execute(
            select(Stage.id, Stage.name, Stage.position, Stage.pipeline_id).where(
                Stage.account_id == caller.account_id, Stage.pipeline_id.in_(list(pipelines))
            )
        )
    }
    live = [Deal.account_id == caller.account_id, Deal.deleted_at.is_(None), deal_visible(caller)]
    open_counts = dict(
        session.execute(
            select(Deal.stage_id, func.count())
            .where(*live, Deal.status == DealStatus.open, Deal.stage_id.in_(list(stages)))
            .group_by(Deal.stage_id)
        )
        .tuples()
        .all()
    )
    since = datetime.combine(start, time(0), tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC)
    return DealDynamics(
        start=start,
        end=end,
        stages=sorted(
            (
                StageNow(
                    pipeline_id=str(s.pipeline_id),
                    pipeline=pipelines[s.pipeline_id],
                    stage_id=str(s.id),
                    stage=s.name,
                    position=s.position,
                    open_deals=open_counts.get(s.id, 0),
                )
                for s in stages.values()
            ),
            key=lambda s: (s.pipeline, s.pipeline_id, s.position),
        ),
        moves=_moves(session, caller, pipelines, stages, since, until),
        outcomes=_outcomes(session, live, pipelines, since, until),
    )


def _moves(
    session: Session,
    caller: Caller,
    pipelines: dict[uuid.UUID, str],
    stages: dict[uuid.UUID, Any],
    since: datetime,
    until: datetime,
) -> list[Move]:
    """Pairs of stages from the recorded events: `created` enters a stage, `stage_changed` moves between two."""
    events = session.execute(
        select(DealEvent.type, DealEvent.data)
        .join(Deal, and_(Deal.id == DealEvent.deal_id, Deal.account_id == DealEvent.account_id))
        .where(
            DealEvent.account_id == caller.account_id,
            DealEvent.type.in_((DealEventType.created, DealEventType.stage_changed)),
            DealEvent.created_at >= since,
            DealEvent.created_at < until,
            Deal.deleted_at.is_(None),
            deal_visible(caller),
        )
    )
    pairs: Counter[tuple[uuid.UUID, uuid.UUID | None, uuid.UUID | None]] = Counter()
    for kind, data in events:
        if kind == DealEventType.created:
            before, after = None, _uuid(data.get("stage_id"))
        elif isinstance(data.get("stage_id"), dict):
            before, after = _uuid(data["stage_id"].get("from")), _uuid(data["stage_id"].get("to"))
        else:
            continue
        # Counted in the pipeline the deal moved into (or, leaving every stage, the one it left).
        moved_to = after if after is not None else before
        anchor = None if moved_to is None else stages.get(moved_to)
        if anchor is None:
            continue
        pairs[(anchor.pipeline_id, before if before in stages else None, after)] += 1

    def name(stage_id: uuid.UUID | None) -> str | None:
        return None if stage_id is None else stages[stage_id].name

    return [
        Move(
            pipeline_id=str(pipeline),
            pipeline=pipelines[pipeline],
            from_stage_id=None if before is None else str(before),
            from_stage=name(before),
            to_stage_id=None if after is None else str(after),
            to_stage=name(after),
            deals=count,
        )
        for (pipeline, before, after), count in sorted(
            pairs.items(),
            key=lambda item: (
                pipelines[item[0][0]],
                -1 if item[0][1] is None else stages[item[0][1]].position,
                -1 if item[0][2] is None else stages[item[0][2]].position,
            ),
        )
    ]


def _outcomes(
    session: Session, live: list[Any], pipelines: dict[uuid.UUID, str], since: datetime, until: datetime
) -> list[Outcome]:
    """Won and lost deals of the period, by the dates they were won and lost (imports keep historical dates)."""
    counted = {
        (row.pipeline_id, row.status): row.deals
        for row in session.execute(
            select(Deal.pipeline_id, Deal.status, func.count().label("deals"))
            .where(
                *live,
                Deal.pipeline_id.in_(list(pipelines)),
                (
                    (Deal.status == DealStatus.won) & (Deal.won_at >= since) & (Deal.won_at < until)
                    | (Deal.status == DealStatus.lost) & (Deal.lost_at >= since) & (Deal.lost_at < until)
                ),
            )
            .group_by(Deal.pipeline_id, Deal.status)
        )
    }
    return [
        Outcome(
            pipeline_id=str(pipeline_id),
            pipeline=name,
            won=counted.get((pipeline_id, DealStatus.won), 0),
            lost=counted.get((pipeline_id, DealStatus.lost), 0),
        )
        for pipeline_id, name in sorted(pipelines.items(), key=lambda item: (item[1], str(item[0])))
    ]


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
