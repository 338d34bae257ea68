"""Deals, and the events that make their timeline (created, moves between stages and pipelines, status changes,
other edits, deletion). Every event records who made it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from services.api.access import deal_visible
from services.api.crm.refs import claim_external_id, reference
from services.api.crm.schemas import DealIn, DealPatch
from services.api.custom_fields import service as custom_fields
from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import Problem, conflict, invalid, not_found
from services.api.provenance import caller_actor, stamp_created, stamp_updated
from shared.models import (
    CustomFieldEntity,
    Deal,
    DealEvent,
    DealEventType,
    DealStatus,
    DealVisibility,
    Organization,
    Person,
    Pipeline,
    Stage,
    User,
)

# Fields whose change is its own kind of event (a move, a status change); the rest are "updated".
_MOVE_FIELDS = {"pipeline_id", "stage_id", "pipeline", "stage"}
_STATUS_FIELDS = {"status", "won_at", "lost_at"}


@dataclass(frozen=True)
class DealFilters:
    person_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    pipeline_id: uuid.UUID | None = None
    stage_id: uuid.UUID | None = None
    owner_user_id: uuid.UUID | None = None
    status: DealStatus | None = None
    include_deleted: bool = False
    custom: Sequence[ColumnElement[bool]] = ()


def list_deals(
    session: Session, caller: Caller, filters: DealFilters, cursor: str | None, limit: int
) -> tuple[list[Deal], str | None]:
    query = select(Deal).where(Deal.account_id == caller.account_id, deal_visible(caller))
    if not filters.include_deleted:
        query = query.where(Deal.deleted_at.is_(None))
    for column, value in (
        (Deal.person_id, filters.person_id),
        (Deal.organization_id, filters.organization_id),
        (Deal.pipeline_id, filters.pipeline_id),
        (Deal.stage_id, filters.stage_id),
        (Deal.owner_user_id, filters.owner_user_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.status is not None:
        query = query.where(Deal.status == filters.status)
    query = query.where(*filters.custom)
    rows = session.scalars(paginate(query, Deal.created_at, Deal.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda d: (d.created_at, d.id))


def get_deal(session: Session, caller: Caller, deal_id: uuid.UUID, *, for_update: bool = False) -> Deal:
    """A deal the caller may see, also when deleted (its history stays readable)."""
    query = select(Deal).where(Deal.account_id == caller.account_id, Deal.id == deal_id, deal_visible(caller))
    deal = session.scalars(query.with_for_update(of=Deal) if for_update else query).one_or_none()
    if deal is None:
        raise not_found("Deal")
    return deal


def create_deal(session: Session, caller: Caller, body: DealIn) -> Deal:
    deal = Deal(account_id=caller.account_id, title=body.title, status=body.status, owner_user_id=caller.user_id)
    _apply(session, caller, deal, body, body.model_fields_set | {"person_id", "organization_id", "visibility"})
    _validate(deal)
    stamp_created(session, caller, deal)
    session.add(deal)
    session.flush()
    record_event(
        session,
        caller,
        deal,
        DealEventType.created,
        {"title": deal.title, "status": deal.status, **_snapshot(session, deal)},
    )
    return deal


def update_deal(session: Session, caller: Caller, deal_id: uuid.UUID, body: DealPatch) -> Deal:
    deal = get_deal(session, caller, deal_id, for_update=True)
    if deal.deleted_at is not None:
        raise conflict("This deal was deleted; it keeps its history but cannot be changed.")
    before = {"title": deal.title, "status": deal.status, **_snapshot(session, deal)}
    _apply(session, caller, deal, body, body.model_fields_set)
    _validate(deal)
    after = {"title": deal.title, "status": deal.status, **_snapshot(session, deal)}
    changes = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    for kind, fields in ((DealEventType.status_changed, _STATUS_FIELDS), (DealEventType.stage_changed, _MOVE_FIELDS)):
        picked = {k: v for k, v in changes.items() if k in fields}
        if picked:
            record_event(session, caller, deal, kind, picked)
    rest = {k: v for k, v in changes.items() if k not in _STATUS_FIELDS | _MOVE_FIELDS}
    if rest:
        record_event(session, caller, deal, DealEventType.updated, rest)
    if changes:
        stamp_updated(session, caller, deal)
    return deal


def delete_deal(session: Session, caller: Caller, deal_id: uuid.UUID) -> None:
    """A soft delete: the deal leaves lists and cannot be chosen any more, but keeps its events, activities,
    notes and mail, and can still be opened by id."""
    deal = get_deal(session, caller, deal_id, for_update=True)
    if deal.deleted_at is not None:
        return
    deal.deleted_at = datetime.now(UTC)
    stamp_updated(session, caller, deal)
    record_event(session, caller, deal, DealEventType.deleted, {"title": deal.title, "status": deal.status})


def record_event(session: Session, caller: Caller, deal: Deal, kind: DealEventType, data: dict[str, Any]) -> None:
    session.add(
        DealEvent(
            account_id=caller.account_id,
            deal_id=deal.id,
            type=kind,
            data=data,
            user_id=caller.user_id,
            actor=caller_actor(session, caller),
        )
    )


def _apply(session: Session, caller: Caller, deal: Deal, body: DealIn | DealPatch, given: set[str]) -> None:
    if "title" in given:
        if body.title is None:
            raise invalid("title", "must not be null", "A deal needs a title.")
        deal.title = body.title
    if "person_id" in given:
        deal.person_id = reference(session, caller, Person, body.person_id, "person_id")
    if "organization_id" in given:
        deal.organization_id = reference(session, caller, Organization, body.organization_id, "organization_id")
    if "owner_user_id" in given:
        deal.owner_user_id = reference(session, caller, User, body.owner_user_id, "owner_user_id")
    if "visibility" in given:
        if body.visibility is None:
            raise invalid("visibility", "must not be null")
        deal.visibility = body.visibility
    if "pipeline_id" in given:
        deal.pipeline_id = reference(session, caller, Pipeline, body.pipeline_id, "pipeline_id")
        if "stage_id" not in given:
            deal.stage_id = _first_stage(session, deal.pipeline_id)
    if "stage_id" in given:
        deal.stage_id = reference(session, caller, Stage, body.stage_id, "stage_id")
        if deal.stage_id is not None:
            stage_pipeline = session.scalar(select(Stage.pipeline_id).where(Stage.id == deal.stage_id))
            if "pipeline_id" in given and deal.pipeline_id not in (None, stage_pipeline):
                raise invalid("stage_id", "the stage is not in this pipeline")
            deal.pipeline_id = stage_pipeline
    if "status" in given:
        if body.status is None:
            raise invalid("status", "must not be null")
        if body.status != deal.status:
            deal.won_at = None
            deal.lost_at = None
            deal.status = body.status
    # Imports give the historical dates; otherwise a status change is stamped now.
    for field in ("won_at", "lost_at"):
        if field in given:
            setattr(deal, field, getattr(body, field))
    if deal.status == DealStatus.won and deal.won_at is None:
        deal.won_at = datetime.now(UTC)
    if deal.status == DealStatus.lost and deal.lost_at is None:
        deal.lost_at = datetime.now(UTC)
    for field in ("value", "currency", "expected_close_date", "recurrence"):
        if field in given:
            setattr(deal, field, getattr(body, field))
    custom_fields.apply(session, caller.account_id, CustomFieldEntity.deal, deal, body.custom_fields)
    if "external_id" in given:
        claim_external_id(session, caller, deal, body.external_id)


def _first_stage(session: Session, pipeline_id: uuid.UUID | None) -> uuid.UUID | None:
    if pipeline_id is None:
        return None
    return session.scalar(
        select(Stage.id).where(Stage.pipeline_id == pipeline_id).order_by(Stage.position, Stage.created_at).limit(1)
    )


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
    if deal.visibility == DealVisibility.private and deal.owner_user_id is None:
        raise invalid("owner_user_id", "a private deal needs an owner", "Only a deal's owner sees a private deal.")
    if deal.won_at is not None and deal.status != DealStatus.won:
        raise invalid("won_at", "only a won deal has a won_at", "Set `status` to `won` with `won_at`.")
    if deal.lost_at is not None and deal.status != DealStatus.lost:
        raise invalid("lost_at", "only a lost deal has a lost_at", "Set `status` to `lost` with `lost_at`.")


def _snapshot(session: Session, deal: Deal) -> dict[str, Any]:
    names = dict(
        session.execute(select(Stage.id, Stage.name).where(Stage.id == deal.stage_id)).tuples().all()
        if deal.stage_id
        else []
    )
    pipeline_name = (
        session.scalar(select(Pipeline.name).where(Pipeline.id == deal.pipeline_id)) if deal.pipeline_id else None
    )
    return {
        "person_id": _s(deal.person_id),
        "organization_id": _s(deal.organization_id),
        "pipeline_id": _s(deal.pipeline_id),
        "pipeline": pipeline_name,
        "stage_id": _s(deal.stage_id),
        "stage": names.get(deal.stage_id) if deal.stage_id else None,
        "owner_user_id": _s(deal.owner_user_id),
        "visibility": deal.visibility,
        "value": None if deal.value is None else str(deal.value),
        "currency": deal.currency,
        "expected_close_date": None if deal.expected_close_date is None else deal.expected_close_date.isoformat(),
        "won_at": None if deal.won_at is None else deal.won_at.isoformat(),
        "lost_at": None if deal.lost_at is None else deal.lost_at.isoformat(),
    }


def _s(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)
