"""Revenue forecast and deal dynamics: what the JSON endpoints return (the CSV and SVG carry the same tables)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

GroupBy = Literal["pipeline", "owner"]


class ForecastRow(BaseModel):
    month: str = Field(description="Expected close month, `YYYY-MM`.")
    group_id: str | None = Field(description="The pipeline's or owner's id; null for deals without one.")
    group_name: str
    deals: int
    value: Decimal = Field(description="Sum of the open deals' values.")
    weighted_value: Decimal = Field(
        description="Each value times its stage's probability; deals in stages without one count in full."
    )


class CurrencyTotal(BaseModel):
    currency: str
    deals: int
    value: Decimal


class Forecast(BaseModel):
    currency: str = Field(description="Every amount of the report is in this currency.")
    group_by: GroupBy
    months: list[str]
    rows: list[ForecastRow]
    total_value: Decimal
    total_weighted_value: Decimal
    undated: CurrencyTotal = Field(description="Open deals in this currency without an expected close date.")
    other_currencies: list[CurrencyTotal] = Field(description="Open deals left out: they are in other currencies.")


class StageNow(BaseModel):
    pipeline_id: str
    pipeline: str
    stage_id: str
    stage: str
    position: int
    open_deals: int


class Move(BaseModel):
    pipeline_id: str
    pipeline: str
    from_stage_id: str | None = Field(description="Null: the deal entered the pipeline (created or moved in).")
    from_stage: str | None
    to_stage_id: str | None
    to_stage: str | None
    deals: int


class Outcome(BaseModel):
    pipeline_id: str
    pipeline: str
    won: int
    lost: int


class DealDynamics(BaseModel):
    start: date
    end: date = Field(description="Inclusive.")
    stages: list[StageNow] = Field(description="Open deals per stage now.")
    moves: list[Move] = Field(description="Stage changes recorded in the period, counted per pair of stages.")
    outcomes: list[Outcome] = Field(description="Deals won and lost in the period (by their won and lost dates).")


DynamicsTable = Literal["stages", "moves", "outcomes"]
