"""Activities: calls, meetings, tasks… linked to a person, organization, deal and/or lead, on a user's calendar."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.access import deal_id_visible
from services.api.crm.activity_types import require_active_type
from services.api.crm.refs import reference
from services.api.crm.schemas import ActivityIn, ActivityPatch
from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import invalid, not_found
from services.api.provenance import stamp_created, stamp_updated
from shared.models import Activity, Deal, Lead, Organization, Person, User


@dataclass(frozen=True)
class ActivityFilters:
    person_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    lead_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    done: bool | None = None
    type: str | None = None


def list_activities(
    session: Session, caller: Caller, filters: ActivityFilters, cursor: str | None, limit: int
) -> tuple[list[Activity], str | None]:
    query = select(Activity).where(Activity.account_id == caller.account_id, deal_id_visible(caller, Activity.deal_id))
    for column, value in (
        (Activity.person_id, filters.person_id),
        (Activity.organization_id, filters.organization_id),
        (Activity.deal_id, filters.deal_id),
        (Activity.lead_id, filters.lead_id),
        (Activity.user_id, filters.user_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.done is not None:
        query = query.where(Activity.done.is_(filters.done))
    if filters.type is not None:
        query = query.where(Activity.type == filters.type)
    rows = session.scalars(paginate(query, Activity.created_at, Activity.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda a: (a.created_at, a.id))


def get_activity(session: Session, caller: Caller, activity_id: uuid.UUID, *, for_update: bool = False) -> Activity:
    query = select(Activity).where(
        Activity.account_id == caller.account_id,
        Activity.id == activity_id,
        deal_id_visible(caller, Activity.deal_id),
    )
    activity = session.scalars(query.with_for_update(of=Activity) if for_update else query).one_or_none()
    if activity is None:
        raise not_found("Activity")
    return activity


def create_activity(session: Session, caller: Caller, body: ActivityIn) -> Activity:
    activity = Activity(
        account_id=caller.account_id, type=body.type, subject=body.subject, done=False, user_id=caller.user_id
    )
    _apply(session, caller, activity, body, body.model_fields_set | {"done", "type"})
    stamp_created(session, caller, activity)
    session.add(activity)
    session.flush()
    session.refresh(activity)  # times as stored (normalized to UTC), the same as a later GET shows
    return activity


def update_activity(session: Session, caller: Caller, activity_id: uuid.UUID, body: ActivityPatch) -> Activity:
    activity = get_activity(session, caller, activity_id, for_update=True)
    _apply(session, caller, activity, body, body.model_fields_set)
    stamp_updated(session, caller, activity)
    session.flush()
    session.refresh(activity)
    return activity


def delete_activity(session: Session, caller: Caller, activity_id: uuid.UUID) -> None:
    session.delete(get_activity(session, caller, activity_id, for_update=True))


def _apply(
    session: Session, caller: Caller, activity: Activity, body: ActivityIn | ActivityPatch, given: set[str]
) -> None:
    for field in ("type", "subject"):
        if field in given:
            value = getattr(body, field)
            if value is None:
                raise invalid(field, "must not be null")
            setattr(activity, field, value)
    if "type" in given and body.type is not None:
        require_active_type(session, caller, body.type)
    for field in ("note", "due_at", "time_zone", "duration_minutes"):
        if field in given:
            setattr(activity, field, getattr(body, field))
    if "done" in given:
        if body.done is None:
            raise invalid("done", "must not be null")
        if body.done and not activity.done:
            activity.done_at = datetime.now(UTC)
        elif not body.done:
            activity.done_at = None
        activity.done = body.done
    references = (
        ("user_id", User),
        ("person_id", Person),
        ("organization_id", Organization),
        ("deal_id", Deal),
        ("lead_id", Lead),
    )
    for field, model in references:
        if field in given:
            setattr(activity, field, reference(session, caller, model, getattr(body, field), field))
