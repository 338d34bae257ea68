"""Deals, and the events that make their timeline (created, stage and status changes, other edits)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from services.api.crm.refs import claim_external_id, reference
from services.api.crm.schemas import DealIn, DealPatch
from services.api.custom_fields import service as custom_fields
from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import Problem, invalid, not_found
from shared.models import Deal, DealEvent, DealStatus, Organization, Person, Pipeline, Stage, Thread


@dataclass(frozen=True)
class DealFilters:
    person_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    pipeline_id: uuid.UUID | None = None
    stage_id: uuid.UUID | None = None
    status: str | None = None
    custom: Sequence[ColumnElement[bool]] = ()


def list_deals(
    session: Session, caller: Caller, filters: DealFilters, cursor: str | None, limit: int
) -> tuple[list[Deal], str | None]:
    query = select(Deal).where(Deal.account_id == caller.account_id)
    for column, value in (
        (Deal.person_id, filters.person_id),
        (Deal.organization_id, filters.organization_id),
        (Deal.pipeline_id, filters.pipeline_id),
        (Deal.stage_id, filters.stage_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.status is not None:
        query = query.where(Deal.status == filters.status)
    query = query.where(*filters.custom)
    rows = session.scalars(paginate(query, Deal.created_at, Deal.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda d: (d.created_at, d.id))


def get_deal(session: Session, caller: Caller, deal_id: uuid.UUID, *, for_update: bool = False) -> Deal:
    query = select(Deal).where(Deal.account_id == caller.account_id, Deal.id == deal_id)
    deal = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if deal is None:
        raise not_found("Deal")
    return deal


def create_deal(session: Session, caller: Caller, body: DealIn) -> Deal:
    deal = Deal(account_id=caller.account_id, title=body.title, status=body.status)
    _apply(session, caller, deal, body, body.model_fields_set | {"person_id", "organization_id"})
    _validate(deal)
    session.add(deal)
    session.flush()
    _event(session, caller, deal, "created", {"title": deal.title, "status": deal.status, **_snapshot(deal)})
    return deal


def update_deal(session: Session, caller: Caller, deal_id: uuid.UUID, body: DealPatch) -> Deal:
    deal = get_deal(session, caller, deal_id, for_update=True)
    before = {"title": deal.title, "status": deal.status, **_snapshot(deal)}
    _apply(session, caller, deal, body, body.model_fields_set)
    _validate(deal)
    after = {"title": deal.title, "status": deal.status, **_snapshot(deal)}
    changes = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    for kind, fields in (("status_changed", {"status"}), ("stage_changed", {"stage_id", "pipeline_id"})):
        picked = {k: v for k, v in changes.items() if k in fields}
        if picked:
            _event(session, caller, deal, kind, picked)
    rest = {k: v for k, v in changes.items() if k not in {"status", "stage_id", "pipeline_id"}}
    if rest:
        _event(session, caller, deal, "updated", rest)
    return deal


def delete_deal(session: Session, caller: Caller, deal_id: uuid.UUID) -> None:
    """Deals are deleted for real; their threads fall back to "no decision yet" (the mail stays with persons)."""
    deal = get_deal(session, caller, deal_id, for_update=True)
    session.execute(
        update(Thread)
        .where(Thread.account_id == caller.account_id, Thread.deal_id == deal.id)
        .values(deal_id=None, deal_rule=None, deal_linked_by_message_id=None)
    )
    session.delete(deal)


def _apply(session: Session, caller: Caller, deal: Deal, body: DealIn | DealPatch, given: set[str]) -> None:
    if "title" in given:
        if body.title is None:
            raise invalid("title", "must not be null", "A deal needs a title.")
        deal.title = body.title
    if "person_id" in given:
        deal.person_id = reference(session, caller, Person, body.person_id, "person_id")
    if "organization_id" in given:
        deal.organization_id = reference(session, caller, Organization, body.organization_id, "organization_id")
    if "pipeline_id" in given:
        deal.pipeline_id = reference(session, caller, Pipeline, body.pipeline_id, "pipeline_id")
        if "stage_id" not in given:
            deal.stage_id = None
    if "stage_id" in given:
        deal.stage_id = reference(session, caller, Stage, body.stage_id, "stage_id")
        if deal.stage_id is not None:
            stage_pipeline = session.scalar(select(Stage.pipeline_id).where(Stage.id == deal.stage_id))
            if "pipeline_id" in given and deal.pipeline_id not in (None, stage_pipeline):
                raise invalid("stage_id", "the stage is not in this pipeline")
            deal.pipeline_id = stage_pipeline
    if "status" in given and body.status is not None and body.status != deal.status:
        now = datetime.now(UTC)
        deal.won_at = now if body.status == DealStatus.won else None
        deal.lost_at = now if body.status == DealStatus.lost else None
        deal.status = body.status
    elif "status" in given and body.status is None:
        raise invalid("status", "must not be null")
    if deal.status == DealStatus.won and deal.won_at is None:
        deal.won_at = datetime.now(UTC)
    if deal.status == DealStatus.lost and deal.lost_at is None:
        deal.lost_at = datetime.now(UTC)
    for field in ("value", "currency", "expected_close_date", "recurrence"):
        if field in given:
            setattr(deal, field, getattr(body, field))
    custom_fields.apply(session, caller.account_id, custom_fields.Entity.deal, deal, body.custom_fields)
    if "external_id" in given:
        claim_external_id(session, caller, deal, body.external_id)


def _validate(deal: Deal) -> None:
    if deal.person_id is None and deal.organization_id is None:
        raise Problem(
            422,
            "validation",
            "The request is not valid",
            "A deal must reference a person or an organization of your account.",
            errors=[
                {"field": "person_id", "message": "a person or an organization is required"},
                {"field": "organization_id", "message": "a person or an organization is required"},
            ],
        )
    if deal.value is not None and deal.currency is None:
        raise invalid("currency", "required when there is a value", "Say which currency the value is in.")


def _snapshot(deal: Deal) -> dict[str, Any]:
    return {
        "person_id": _s(deal.person_id),
        "organization_id": _s(deal.organization_id),
        "pipeline_id": _s(deal.pipeline_id),
        "stage_id": _s(deal.stage_id),
        "value": None if deal.value is None else str(deal.value),
        "currency": deal.currency,
        "expected_close_date": None if deal.expected_close_date is None else deal.expected_close_date.isoformat(),
    }


def _event(session: Session, caller: Caller, deal: Deal, kind: str, data: dict[str, Any]) -> None:
    session.add(DealEvent(account_id=caller.account_id, deal_id=deal.id, type=kind, data=data, user_id=caller.user_id))


def _s(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)
