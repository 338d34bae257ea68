"""Leads and their conversion.

Converting creates (or finds) the person and organization and creates a deal in the first stage of a pipeline,
then gives them the lead's history: its threads and messages, activities and notes now also belong to the new
records, while staying on the lead, so nothing the lead saw is lost. The lead row is locked (`SELECT … FOR
UPDATE`) for the whole conversion and a unique constraint holds its one deal, so converting twice, or twice at
once, produces one person and one deal and answers the same both times.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.api.access import pipeline_visible
from services.api.crm.deals import record_event
from services.api.crm.persons import add_emails, escape_like, needs_email_or_phone
from services.api.crm.refs import reference
from services.api.deps import Caller
from services.api.leads.schemas import LeadConvertIn, LeadIn, LeadPatch
from services.api.mailbox.service import lead_threads
from services.api.pagination import page_rows, paginate
from services.api.problems import conflict, invalid, not_found
from services.api.provenance import stamp_created, stamp_updated
from shared.addresses import normalize_address
from shared.events import PersonCreated, emit
from shared.locks import lock_names
from shared.models import (
    Activity,
    CreatedFrom,
    Deal,
    DealEventType,
    DealStatus,
    Lead,
    LeadStatus,
    Message,
    MessagePerson,
    MessagePersonRole,
    Note,
    Organization,
    OrganizationDomain,
    OrganizationRule,
    Person,
    PersonEmail,
    PersonRule,
    Pipeline,
    Stage,
    Thread,
    ThreadDealRule,
    User,
)


@dataclass(frozen=True)
class LeadFilters:
    status: LeadStatus | None = None
    email: str | None = None
    owner_user_id: uuid.UUID | None = None
    q: str | None = None
    include_deleted: bool = False


@dataclass(frozen=True)
class Conversion:
    lead: Lead
    created_person: bool
    created_organization: bool
    converted_now: bool


def list_leads(
    session: Session, caller: Caller, filters: LeadFilters, cursor: str | None, limit: int
) -> tuple[list[Lead], str | None]:
    query = select(Lead).where(Lead.account_id == caller.account_id)
    if not filters.include_deleted:
        query = query.where(Lead.deleted_at.is_(None))
    if filters.status is not None:
        query = query.where(Lead.status == filters.status)
    if filters.email is not None:
        query = query.where(Lead.email == normalize_address(filters.email))
    if filters.owner_user_id is not None:
        query = query.where(Lead.owner_user_id == filters.owner_user_id)
    if filters.q:
        pattern = "%" + escape_like(filters.q) + "%"
        query = query.where(or_(Lead.name.ilike(pattern, escape="\\"), Lead.company.ilike(pattern, escape="\\")))
    rows = session.scalars(paginate(query, Lead.created_at, Lead.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda lead: (lead.created_at, lead.id))


def get_lead(session: Session, caller: Caller, lead_id: uuid.UUID, *, for_update: bool = False) -> Lead:
    query = select(Lead).where(Lead.account_id == caller.account_id, Lead.id == lead_id)
    lead = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if lead is None:
        raise not_found("Lead")
    return lead


def create_lead(session: Session, caller: Caller, body: LeadIn) -> Lead:
    lead = Lead(
        account_id=caller.account_id, name=body.name, status=LeadStatus(body.status), owner_user_id=caller.user_id
    )
    _apply(session, caller, lead, body, body.model_fields_set)
    _validate(lead)
    stamp_created(session, caller, lead)
    session.add(lead)
    session.flush()
    session.refresh(lead)  # values as stored (money with its two decimals), the same as a later GET shows
    return lead


def update_lead(session: Session, caller: Caller, lead_id: uuid.UUID, body: LeadPatch) -> Lead:
    lead = get_lead(session, caller, lead_id, for_update=True)
    if lead.deleted_at is not None:
        raise conflict("This lead was deleted; it keeps its history but cannot be changed.")
    if lead.status == LeadStatus.converted:
        raise conflict("This lead was converted; change its person and deal instead (the lead stays as history).")
    _apply(session, caller, lead, body, body.model_fields_set)
    _validate(lead)
    stamp_updated(session, caller, lead)
    session.flush()
    session.refresh(lead)
    return lead


def delete_lead(session: Session, caller: Caller, lead_id: uuid.UUID) -> None:
    """Soft delete: its mail, activities and notes keep pointing at it."""
    lead = get_lead(session, caller, lead_id, for_update=True)
    if lead.deleted_at is None:
        lead.deleted_at = datetime.now(UTC)
        stamp_updated(session, caller, lead)


def convert_lead(session: Session, caller: Caller, lead_id: uuid.UUID, body: LeadConvertIn) -> Conversion:
    lead = get_lead(session, caller, lead_id, for_update=True)
    if lead.status == LeadStatus.converted:
        return Conversion(lead, created_person=False, created_organization=False, converted_now=False)
    if lead.deleted_at is not None:
        raise conflict("This lead was deleted; restore it before converting.")
    pipeline_id, stage_id = _target_stage(session, caller, body.pipeline_id)
    organization_id, created_organization = _organization_for(session, caller, lead)
    person_id, created_person = _person_for(session, caller, lead, organization_id)
    deal = Deal(
        account_id=caller.account_id,
        title=body.deal_title or lead.company or lead.name,
        person_id=person_id,
        organization_id=organization_id,
        pipeline_id=pipeline_id,
        stage_id=stage_id,
        status=DealStatus.open,
        value=lead.value,
        currency=lead.currency,
        owner_user_id=lead.owner_user_id or caller.user_id,
    )
    stamp_created(session, caller, deal)
    session.add(deal)
    session.flush()
    record_event(
        session,
        caller,
        deal,
        DealEventType.created,
        {"title": deal.title, "status": deal.status, "lead_id": str(lead.id)},
    )
    _carry_history(session, caller, lead, person_id, organization_id, deal.id)
    lead.status = LeadStatus.converted
    lead.converted_at = datetime.now(UTC)
    lead.converted_person_id = person_id
    lead.converted_organization_id = organization_id
    lead.converted_deal_id = deal.id
    stamp_updated(session, caller, lead)
    session.flush()
    if created_person:
        emit(
            session,
            caller.account_id,
            PersonCreated(
                person_id=person_id,
                addresses=[normalize_address(lead.email)] if lead.email else [],
                created_from=CreatedFrom.lead,
            ),
        )
    return Conversion(lead, created_person, created_organization, converted_now=True)


def _target_stage(session: Session, caller: Caller, pipeline_ref: str | None) -> tuple[uuid.UUID, uuid.UUID]:
    if pipeline_ref is not None:
        pipeline_id = reference(session, caller, Pipeline, pipeline_ref, "pipeline_id")
    else:
        pipeline_id = session.scalar(
            select(Pipeline.id)
            .where(Pipeline.account_id == caller.account_id, pipeline_visible(caller))
            .order_by(Pipeline.created_at, Pipeline.id)
            .limit(1)
        )
        if pipeline_id is None:
            raise invalid(
                "pipeline_id",
                "the account has no pipeline",
                "Converting creates a deal in a pipeline's first stage: create a pipeline first (POST /v1/pipelines).",
            )
    stage_id = session.scalar(
        select(Stage.id).where(Stage.pipeline_id == pipeline_id).order_by(Stage.position, Stage.created_at).limit(1)
    )
    if stage_id is None:
        raise invalid("pipeline_id", "the pipeline has no stages", "Add a stage to the pipeline before converting.")
    assert pipeline_id is not None
    return pipeline_id, stage_id


def _organization_for(session: Session, caller: Caller, lead: Lead) -> tuple[uuid.UUID | None, bool]:
    """The organization owning the lead's e-mail domain, else the one named like its company, else a new one."""
    if lead.email:
        domain = lead.email.rsplit("@", 1)[-1]
        owner = session.scalar(
            select(OrganizationDomain.organization_id)
            .join(Organization, Organization.id == OrganizationDomain.organization_id)
            .where(
                OrganizationDomain.account_id == caller.account_id,
                OrganizationDomain.domain == domain,
                Organization.deleted_at.is_(None),
            )
        )
        if owner is not None:
            return owner, False
    if not lead.company:
        return None, False
    lock_names(session, caller.account_id, [f"organization-name:{lead.company.lower()}"])
    named = session.scalar(
        select(Organization.id)
        .where(
            Organization.account_id == caller.account_id,
            func.lower(Organization.name) == lead.company.lower(),
            Organization.deleted_at.is_(None),
        )
        .order_by(Organization.created_at, Organization.id)
        .limit(1)
    )
    if named is not None:
        return named, False
    organization = Organization(account_id=caller.account_id, name=lead.company, created_from=CreatedFrom.lead)
    stamp_created(session, caller, organization)
    session.add(organization)
    session.flush()
    return organization.id, True


def _person_for(
    session: Session, caller: Caller, lead: Lead, organization_id: uuid.UUID | None
) -> tuple[uuid.UUID, bool]:
    """The person with the lead's address (the matcher may have made one from mail), else a new one."""
    if lead.email:
        # The matcher takes the same lock before creating a person for an address.
        lock_names(session, caller.account_id, [f"person-address:{lead.email}"])
        existing = session.execute(
            select(Person.id, Person.deleted_at, Person.organization_id)
            .join(PersonEmail, PersonEmail.person_id == Person.id)
            .where(PersonEmail.account_id == caller.account_id, PersonEmail.address == lead.email)
        ).one_or_none()
        if existing is not None:
            if existing.deleted_at is not None:
                raise conflict(
                    f"{lead.email} belongs to a deleted person; deleted persons are never re-created. "
                    "Change the lead's e-mail address, or convert it without one."
                )
            if existing.organization_id is None and organization_id is not None:
                session.execute(
                    update(Person)
                    .where(Person.id == existing.id)
                    .values(organization_id=organization_id, organization_rule=OrganizationRule.lead_converted)
                )
            return existing.id, False
    person = Person(
        account_id=caller.account_id,
        name=lead.name,
        phone=lead.phone,
        organization_id=organization_id,
        organization_rule=None if organization_id is None else OrganizationRule.lead_converted,
        created_from=CreatedFrom.lead,
    )
    stamp_created(session, caller, person)
    session.add(person)
    session.flush()
    if lead.email:
        add_emails(session, caller, person, [lead.email])
    return person.id, True


def _carry_history(
    session: Session,
    caller: Caller,
    lead: Lead,
    person_id: uuid.UUID,
    organization_id: uuid.UUID | None,
    deal_id: uuid.UUID,
) -> None:
    """The lead's mail, activities and notes also belong to its person, organization and deal from now on."""
    account_id = caller.account_id
    threads = lead_threads(account_id, lead.id)
    session.execute(
        update(Thread)
        .where(Thread.account_id == account_id, Thread.id.in_(threads), Thread.deal_id.is_(None))
        .values(deal_id=deal_id, deal_rule=ThreadDealRule.lead_converted)
    )
    if lead.email:
        links: list[dict[str, object]] = []
        for message in session.execute(
            select(Message.id, Message.from_address, Message.to, Message.cc).where(
                Message.account_id == account_id, Message.thread_id.in_(threads)
            )
        ):
            roles = _roles_of(lead.email, message.from_address, message.to, message.cc)
            links.extend(
                {
                    "account_id": account_id,
                    "message_id": message.id,
                    "person_id": person_id,
                    "role": role,
                    "rule": PersonRule.lead_converted,
                }
                for role in roles
            )
        if links:
            session.execute(insert(MessagePerson).values(links).on_conflict_do_nothing())
    for model in (Activity, Note):
        session.execute(
            update(model)
            .where(model.account_id == account_id, model.lead_id == lead.id)
            .values(
                person_id=func.coalesce(model.person_id, person_id),
                organization_id=func.coalesce(model.organization_id, organization_id),
                deal_id=func.coalesce(model.deal_id, deal_id),
            )
        )


def _roles_of(
    address: str, sender: str | None, to: list[dict[str, str]], cc: list[dict[str, str]]
) -> list[MessagePersonRole]:
    roles = []
    if sender and normalize_address(sender) == address:
        roles.append(MessagePersonRole.from_)
    for role, recipients in ((MessagePersonRole.to, to), (MessagePersonRole.cc, cc)):
        if any(normalize_address(r.get("address", "")) == address for r in recipients):
            roles.append(role)
    return roles


def _apply(session: Session, caller: Caller, lead: Lead, body: LeadIn | LeadPatch, given: set[str]) -> None:
    if "name" in given:
        if body.name is None:
            raise invalid("name", "must not be null", "A lead needs a name.")
        lead.name = body.name
    if "status" in given:
        if body.status is None:
            raise invalid("status", "must not be null")
        lead.status = LeadStatus(body.status)
    if "email" in given:
        lead.email = None if body.email is None else normalize_address(str(body.email))
    for field in ("company", "source", "phone", "value", "currency"):
        if field in given:
            setattr(lead, field, getattr(body, field))
    if "owner_user_id" in given:
        lead.owner_user_id = reference(session, caller, User, body.owner_user_id, "owner_user_id")


def _validate(lead: Lead) -> None:
    if not lead.email and not lead.phone:
        raise needs_email_or_phone("a lead", "email")
    if lead.value is not None and lead.currency is None:
        raise invalid("currency", "required when there is a value", "Say which currency the value is in.")
