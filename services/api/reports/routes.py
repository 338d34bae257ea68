"""Reports: JSON for programs, a chart (SVG) for people, and each table as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from services.api.deps import CurrentCaller, DbSession, filter_id
from services.api.problems import invalid
from services.api.reports import service
from services.api.reports.schemas import DealDynamics, DynamicsTable, Forecast, GroupBy
from services.api.reports.svg import bar_chart

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Currency = Annotated[
    str | None,
    Query(pattern=r"^[A-Z]{3}$", description="ISO 4217. Default: the currency most open deals are in."),
]
GroupByParam = Annotated[GroupBy, Query(description="Rows per pipeline or per deal owner.")]
Start = Annotated[date | None, Query(description="First day of the period. Default: the first of this month.")]
End = Annotated[date | None, Query(description="Last day of the period (inclusive). Default: today.")]
MAX_PERIOD_DAYS = 5 * 366
SVG = "image/svg+xml"


def _forecast(
    caller: CurrentCaller,
    session: DbSession,
    currency: Currency,
    group_by: GroupByParam,
    pipeline_id: str | None,
    owner_user_id: str | None,
) -> Forecast:
    return service.forecast(
        session,
        caller,
        currency=currency,
        group_by=group_by,
        pipeline_id=filter_id(pipeline_id),
        owner_id=filter_id(owner_user_id),
    )


@router.get("/forecast", response_model=Forecast)
def forecast(
    caller: CurrentCaller,
    session: DbSession,
    currency: Currency = None,
    group_by: GroupByParam = "pipeline",
    pipeline_id: str | None = None,
    owner_user_id: str | None = None,
) -> Forecast:
    """Open deals by expected close month, per pipeline or owner: their value, and their value weighted by the
    probability of the stage they are in (stages without one count in full). One currency per report."""
    return _forecast(caller, session, currency, group_by, pipeline_id, owner_user_id)


@router.get("/forecast.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def forecast_csv(
    caller: CurrentCaller,
    session: DbSession,
    currency: Currency = None,
    group_by: GroupByParam = "pipeline",
    pipeline_id: str | None = None,
    owner_user_id: str | None = None,
) -> Response:
    """The forecast's rows as CSV."""
    report = _forecast(caller, session, currency, group_by, pipeline_id, owner_user_id)
    header = ["month", group_by, f"{group_by}_id", "deals", f"value_{report.currency}", f"weighted_{report.currency}"]
    rows = [[r.month, r.group_name, r.group_id or "", r.deals, r.value, r.weighted_value] for r in report.rows]
    return _csv("forecast.csv", header, rows)


@router.get("/forecast.svg", response_class=Response, responses={200: {"content": {SVG: {}}}})
def forecast_svg(
    caller: CurrentCaller,
    session: DbSession,
    currency: Currency = None,
    group_by: GroupByParam = "pipeline",
    pipeline_id: str | None = None,
    owner_user_id: str | None = None,
) -> Response:
    """The weighted forecast as a stacked bar chart: one bar per month, one color per pipeline or owner."""
    report = _forecast(caller, session, currency, group_by, pipeline_id, owner_user_id)
    groups = sorted({r.group_name for r in report.rows})
    weighted = {(r.month, r.group_name): float(r.weighted_value) for r in report.rows}
    series = [(name, [weighted.get((month, name), 0.0) for month in report.months]) for name in groups]
    title = f"Weighted revenue forecast by expected close month ({report.currency})"
    return Response(bar_chart(title, report.months, series), media_type=SVG)


def _dynamics(
    caller: CurrentCaller, session: DbSession, pipeline_id: str | None, start: date | None, end: date | None
) -> DealDynamics:
    default_start, default_end = service.default_period()
    start, end = start or default_start, end or default_end
    if start > end:
        raise invalid("query.start", "must not be after end")
    if (end - start).days > MAX_PERIOD_DAYS:
        raise invalid("query.end", "a period is at most five years")
    return service.deal_dynamics(session, caller, pipeline_id=filter_id(pipeline_id), start=start, end=end)


@router.get("/deal-dynamics", response_model=DealDynamics)
def deal_dynamics(
    caller: CurrentCaller,
    session: DbSession,
    pipeline_id: str | None = None,
    start: Start = None,
    end: End = None,
) -> DealDynamics:
    """Per pipeline and period: open deals per stage now, the moves between stages recorded in the period, and the
    deals won and lost in it."""
    return _dynamics(caller, session, pipeline_id, start, end)


@router.get("/deal-dynamics.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def deal_dynamics_csv(
    caller: CurrentCaller,
    session: DbSession,
    pipeline_id: str | None = None,
    start: Start = None,
    end: End = None,
    table: Annotated[DynamicsTable, Query(description="Which table of the report.")] = "stages",
) -> Response:
    report = _dynamics(caller, session, pipeline_id, start, end)
    if table == "stages":
        header = ["pipeline", "pipeline_id", "stage", "stage_id", "open_deals"]
        rows: list[list[Any]] = [[s.pipeline, s.pipeline_id, s.stage, s.stage_id, s.open_deals] for s in report.stages]
    elif table == "moves":
        header = ["pipeline", "pipeline_id", "from_stage", "from_stage_id", "to_stage", "to_stage_id", "deals"]
        rows = [
            [
                m.pipeline,
                m.pipeline_id,
                m.from_stage or "",
                m.from_stage_id or "",
                m.to_stage or "",
                m.to_stage_id or "",
                m.deals,
            ]
            for m in report.moves
        ]
    else:
        header = ["pipeline", "pipeline_id", "won", "lost", "start", "end"]
        rows = [[o.pipeline, o.pipeline_id, o.won, o.lost, report.start, report.end] for o in report.outcomes]
    return _csv(f"deal-dynamics-{table}.csv", header, rows)


@router.get("/deal-dynamics.svg", response_class=Response, responses={200: {"content": {SVG: {}}}})
def deal_dynamics_svg(
    caller: CurrentCaller,
    session: DbSession,
    pipeline_id: str | None = None,
    start: Start = None,
    end: End = None,
) -> Response:
    """Open deals per stage now, next to the deals won and lost in the period, per pipeline."""
    report = _dynamics(caller, session, pipeline_id, start, end)
    several = len({s.pipeline_id for s in report.stages} | {o.pipeline_id for o in report.outcomes}) > 1
    categories: list[str] = []
    open_now: list[float] = []
    won: list[float] = []
    lost: list[float] = []

    def bar(label: str, counts: tuple[float, float, float]) -> None:
        categories.append(label)
        for column, count in zip((open_now, won, lost), counts, strict=True):
            column.append(count)

    for outcome in report.outcomes:
        prefix = f"{outcome.pipeline}: " if several else ""
        for stage in (s for s in report.stages if s.pipeline_id == outcome.pipeline_id):
            bar(prefix + stage.stage, (stage.open_deals, 0, 0))
        bar(prefix + "won in period", (0, outcome.won, 0))
        bar(prefix + "lost in period", (0, 0, outcome.lost))
    title = f"Deals per stage now, won and lost {report.start.isoformat()} – {report.end.isoformat()}"
    series = [("open now", open_now), ("won", won), ("lost", lost)]
    return Response(bar_chart(title, categories, series), media_type=SVG)


def _csv(filename: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        out.getvalue().encode(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
