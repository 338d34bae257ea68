"""Organizations and the e-mail domains they own. Deleting is a soft delete, like persons."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.api.crm.persons import escape_like
from services.api.crm.refs import claim_external_id
from services.api.crm.schemas import OrganizationIn, OrganizationPatch
from services.api.custom_fields import service as custom_fields
from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import conflict, invalid, not_found
from services.api.provenance import stamp_created, stamp_updated
from shared.models import CreatedFrom, CustomFieldEntity, Organization, OrganizationDomain


@dataclass(frozen=True)
class OrganizationFilters:
    domain: str | None = None
    q: str | None = None
    include_deleted: bool = False
    custom: Sequence[ColumnElement[bool]] = ()


def list_organizations(
    session: Session, caller: Caller, filters: OrganizationFilters, cursor: str | None, limit: int
) -> tuple[list[Organization], str | None]:
    query = select(Organization).where(Organization.account_id == caller.account_id)
    if not filters.include_deleted:
        query = query.where(Organization.deleted_at.is_(None))
    if filters.domain is not None:
        query = query.where(
            Organization.id.in_(
                select(OrganizationDomain.organization_id).where(
                    OrganizationDomain.account_id == caller.account_id,
                    OrganizationDomain.domain == filters.domain.strip().lstrip("@").lower(),
                )
            )
        )
    if filters.q:
        query = query.where(Organization.name.ilike("%" + escape_like(filters.q) + "%", escape="\\"))
    query = query.where(*filters.custom)
    rows = session.scalars(paginate(query, Organization.created_at, Organization.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda o: (o.created_at, o.id))


def get_organization(
    session: Session, caller: Caller, organization_id: uuid.UUID, *, for_update: bool = False
) -> Organization:
    query = select(Organization).where(Organization.account_id == caller.account_id, Organization.id == organization_id)
    organization = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if organization is None:
        raise not_found("Organization")
    return organization


def domains_of(session: Session, organizations: Sequence[Organization]) -> dict[uuid.UUID, list[str]]:
    domains: dict[uuid.UUID, list[str]] = defaultdict(list)
    for row in session.execute(
        select(OrganizationDomain.organization_id, OrganizationDomain.domain)
        .where(OrganizationDomain.organization_id.in_([o.id for o in organizations]))
        .order_by(OrganizationDomain.domain)
    ):
        domains[row.organization_id].append(row.domain)
    return domains


def create_organization(session: Session, caller: Caller, body: OrganizationIn) -> Organization:
    organization = Organization(account_id=caller.account_id, name=body.name, created_from=CreatedFrom.api)
    custom_fields.apply(session, caller.account_id, CustomFieldEntity.organization, organization, body.custom_fields)
    claim_external_id(session, caller, organization, body.external_id)
    stamp_created(session, caller, organization)
    session.add(organization)
    session.flush()
    _add_domains(session, caller, organization, body.domains)
    return organization


def update_organization(
    session: Session, caller: Caller, organization_id: uuid.UUID, body: OrganizationPatch
) -> Organization:
    organization = get_organization(session, caller, organization_id, for_update=True)
    if organization.deleted_at is not None:
        raise conflict("This organization was deleted; it keeps its history but cannot be changed.")
    given = body.model_fields_set
    if "name" in given:
        if body.name is None:
            raise invalid("name", "must not be null", "An organization needs a name.")
        organization.name = body.name
    if "domains" in given:
        wanted = list(dict.fromkeys(body.domains or []))
        session.execute(
            delete(OrganizationDomain).where(
                OrganizationDomain.organization_id == organization.id, OrganizationDomain.domain.not_in(wanted)
            )
        )
        current = set(domains_of(session, [organization])[organization.id])
        _add_domains(session, caller, organization, [d for d in wanted if d not in current])
    custom_fields.apply(session, caller.account_id, CustomFieldEntity.organization, organization, body.custom_fields)
    if "external_id" in given:
        claim_external_id(session, caller, organization, body.external_id)
    stamp_updated(session, caller, organization)
    return organization


def delete_organization(session: Session, caller: Caller, organization_id: uuid.UUID) -> None:
    """Soft delete: its persons, deals and mail keep pointing at it; its domains stay reserved by the tombstone."""
    organization = get_organization(session, caller, organization_id, for_update=True)
    if organization.deleted_at is None:
        organization.deleted_at = datetime.now(UTC)
        stamp_updated(session, caller, organization)


def _add_domains(session: Session, caller: Caller, organization: Organization, domains: list[str]) -> None:
    for domain in dict.fromkeys(domains):
        inserted = session.execute(
            insert(OrganizationDomain)
            .values(id=uuid.uuid4(), account_id=caller.account_id, organization_id=organization.id, domain=domain)
            .on_conflict_do_nothing()
            .returning(OrganizationDomain.id)
        ).scalar()
        if inserted is None:
            raise conflict(f"{domain} already belongs to another organization (possibly a deleted one).")
