"""References from one CRM record to another, checked against the caller's account."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.access import deal_visible, pipeline_visible
from services.api.deps import Caller
from services.api.problems import conflict, invalid
from shared.models import Deal, Lead, Organization, Person, Pipeline, Stage, User

Referable = type[Person] | type[Organization] | type[Deal] | type[Pipeline] | type[Stage] | type[User] | type[Lead]

_WHAT = {
    Person: "person",
    Organization: "organization",
    Deal: "deal",
    Pipeline: "pipeline",
    Stage: "stage",
    User: "user",
    Lead: "lead",
}


def reference(session: Session, caller: Caller, model: Referable, value: str | None, field: str) -> uuid.UUID | None:
    """The id in `value` if it names a live record of the account; a 422 on `field` otherwise.

    Another account's id gets the same answer as a made-up one, so a reference confirms nothing; so does a deal or
    pipeline the caller may not see.
    """
    if value is None:
        return None
    what = _WHAT[model]
    try:
        record_id = uuid.UUID(value)
    except ValueError:
        raise invalid(field, f"no such {what} in this account") from None
    query = select(model.id).where(model.account_id == caller.account_id, model.id == record_id)
    if model is Person or model is Organization or model is Lead:
        query = query.where(model.deleted_at.is_(None))
    elif model is Deal:
        query = query.where(Deal.deleted_at.is_(None), deal_visible(caller))
    elif model is Pipeline:
        query = query.where(pipeline_visible(caller))
    elif model is Stage:
        query = query.join(Pipeline, Pipeline.id == Stage.pipeline_id).where(pipeline_visible(caller))
    if session.scalar(query) is None:
        raise invalid(field, f"no such {what} in this account")
    return record_id


def claim_external_id(
    session: Session, caller: Caller, record: Person | Organization | Deal | Lead, value: str | None
) -> None:
    """Give `record` the external id `value`, which no other record of its kind in the account may have."""
    model = type(record)
    if value is not None:
        taken = session.scalar(
            select(model.id).where(
                model.account_id == caller.account_id, model.external_id == value, model.id != record.id
            )
        )
        if taken is not None:
            raise conflict(f"Another {_WHAT[model]} has the external id {value!r}.")
    record.external_id = value
