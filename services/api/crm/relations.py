"""Organizations related to organizations: parent and subsidiary, or simply related. Stored once, as the parent
side (or in id order for `related`), and shown from both sides."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from services.api.crm.organizations import get_organization
from services.api.crm.refs import reference
from services.api.crm.schemas import OrganizationRelationIn
from services.api.deps import Caller
from services.api.problems import conflict, invalid, not_found
from services.api.provenance import caller_actor
from shared.locks import lock_names
from shared.models import Organization, OrganizationRelation, OrganizationRelationKind


@dataclass(frozen=True)
class RelationView:
    """A relation as seen from one organization: what the other one is to it."""

    id: uuid.UUID
    other_id: uuid.UUID
    other_name: str
    type: str
    created_at: datetime
    created_by: dict[str, Any] | None


def list_relations(session: Session, caller: Caller, organization_id: uuid.UUID) -> list[RelationView]:
    get_organization(session, caller, organization_id)
    rows = session.scalars(
        select(OrganizationRelation)
        .where(
            OrganizationRelation.account_id == caller.account_id,
            or_(
                OrganizationRelation.organization_id == organization_id,
                OrganizationRelation.related_organization_id == organization_id,
            ),
        )
        .order_by(OrganizationRelation.created_at, OrganizationRelation.id)
    ).all()
    others = {r.related_organization_id if r.organization_id == organization_id else r.organization_id for r in rows}
    names = dict(
        session.execute(select(Organization.id, Organization.name).where(Organization.id.in_(others))).tuples().all()
    )
    views = []
    for row in rows:
        mine_first = row.organization_id == organization_id
        other = row.related_organization_id if mine_first else row.organization_id
        # A stored `parent` row says "organization_id is the parent of related_organization_id".
        kind = "subsidiary" if mine_first else "parent"
        if row.kind == OrganizationRelationKind.related:
            kind = "related"
        views.append(RelationView(row.id, other, names.get(other, ""), kind, row.created_at, row.created_by))
    return views


def add_relation(
    session: Session, caller: Caller, organization_id: uuid.UUID, body: OrganizationRelationIn
) -> RelationView:
    this = get_organization(session, caller, organization_id)
    other = reference(session, caller, Organization, body.organization_id, "organization_id")
    assert other is not None  # a required field
    if other == this.id:
        raise invalid("organization_id", "an organization cannot be related to itself")
    # Two requests relating the same pair (from either side) take turns, so the pair is stored once.
    lock_names(session, caller.account_id, [f"organization-relation:{min(this.id, other)}:{max(this.id, other)}"])
    existing = session.scalar(
        select(OrganizationRelation.id).where(
            OrganizationRelation.account_id == caller.account_id,
            or_(
                and_(
                    OrganizationRelation.organization_id == this.id,
                    OrganizationRelation.related_organization_id == other,
                ),
                and_(
                    OrganizationRelation.organization_id == other,
                    OrganizationRelation.related_organization_id == this.id,
                ),
            ),
        )
    )
    if existing is not None:
        raise conflict("These organizations are already related; delete that relation first to change it.")
    if body.type == "parent":
        first, second, kind = other, this.id, OrganizationRelationKind.parent
    elif body.type == "subsidiary":
        first, second, kind = this.id, other, OrganizationRelationKind.parent
    else:
        first, second, kind = min(this.id, other), max(this.id, other), OrganizationRelationKind.related
    row = OrganizationRelation(
        account_id=caller.account_id,
        organization_id=first,
        related_organization_id=second,
        kind=kind,
        created_by=caller_actor(session, caller),
    )
    session.add(row)
    session.flush()
    return next(v for v in list_relations(session, caller, this.id) if v.id == row.id)


def delete_relation(session: Session, caller: Caller, organization_id: uuid.UUID, relation_id: uuid.UUID) -> None:
    get_organization(session, caller, organization_id)
    row = session.scalars(
        select(OrganizationRelation).where(
            OrganizationRelation.account_id == caller.account_id,
            OrganizationRelation.id == relation_id,
            or_(
                OrganizationRelation.organization_id == organization_id,
                OrganizationRelation.related_organization_id == organization_id,
            ),
        )
    ).one_or_none()
    if row is None:
        raise not_found("Relation")
    session.delete(row)
