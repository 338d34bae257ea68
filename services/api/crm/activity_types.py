"""The activity types an account offers. Every account starts with the standard ones, added on first use."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.api.crm.schemas import ActivityTypeIn, ActivityTypePatch
from services.api.deps import Caller
from services.api.problems import conflict, invalid, not_found
from shared.models import ActivityType

STANDARD_TYPES = (
    ("call", "Call"),
    ("meeting", "Meeting"),
    ("task", "Task"),
    ("deadline", "Deadline"),
    ("email", "E-mail"),
    ("lunch", "Lunch"),
)
POSITION_STEP = 10


def list_types(session: Session, caller: Caller) -> list[ActivityType]:
    _ensure_standard_types(session, caller.account_id)
    return list(
        session.scalars(
            select(ActivityType)
            .where(ActivityType.account_id == caller.account_id)
            .order_by(ActivityType.position, ActivityType.key)
        )
    )


def add_type(session: Session, caller: Caller, body: ActivityTypeIn) -> ActivityType:
    _ensure_standard_types(session, caller.account_id)
    last = session.scalar(select(func.max(ActivityType.position)).where(ActivityType.account_id == caller.account_id))
    created = session.scalar(
        insert(ActivityType)
        .values(
            id=uuid.uuid4(),
            account_id=caller.account_id,
            key=body.key,
            name=body.name,
            position=(last or 0) + POSITION_STEP,
        )
        .on_conflict_do_nothing()
        .returning(ActivityType.id)
    )
    if created is None:
        raise conflict(f"The activity type `{body.key}` already exists; PATCH it to rename or re-activate it.")
    return session.get_one(ActivityType, created)


def update_type(session: Session, caller: Caller, key: str, body: ActivityTypePatch) -> ActivityType:
    _ensure_standard_types(session, caller.account_id)
    found = session.scalars(
        select(ActivityType).where(ActivityType.account_id == caller.account_id, ActivityType.key == key)
    ).one_or_none()
    if found is None:
        raise not_found("Activity type")
    if "name" in body.model_fields_set:
        if body.name is None:
            raise invalid("name", "must not be null")
        found.name = body.name
    if "active" in body.model_fields_set:
        if body.active is None:
            raise invalid("active", "must not be null")
        found.active = body.active
    return found


def require_active_type(session: Session, caller: Caller, key: str) -> None:
    types = list_types(session, caller)
    if not any(t.key == key and t.active for t in types):
        offered = ", ".join(t.key for t in types if t.active)
        raise invalid(
            "type",
            f"`{key}` is not an activity type of this account",
            f"Use one of this account's activity types ({offered}), or add `{key}` under /v1/activity-types.",
        )


def _ensure_standard_types(session: Session, account_id: uuid.UUID) -> None:
    if session.scalar(select(ActivityType.id).where(ActivityType.account_id == account_id).limit(1)) is not None:
        return
    session.execute(
        insert(ActivityType)
        .values(
            [
                {"id": uuid.uuid4(), "account_id": account_id, "key": key, "name": name, "position": i * POSITION_STEP}
                for i, (key, name) in enumerate(STANDARD_TYPES)
            ]
        )
        .on_conflict_do_nothing()
    )
