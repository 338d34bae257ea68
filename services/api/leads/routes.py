"""Leads: the first step of the lead → contact → deal path."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.orm import Session

from services.api.common import Page, sid
from services.api.crm.addresses import record_addresses
from services.api.deps import AppSettings, Caller, CurrentCaller, DbSession, filter_id, parse_id
from services.api.leads import service
from services.api.leads.schemas import LeadConversionOut, LeadConvertIn, LeadIn, LeadOut, LeadPatch
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from services.api.provenance import actor_out
from shared.models import Lead, LeadStatus

router = APIRouter(prefix="/v1", tags=["leads"])


@router.get("/leads", response_model=Page[LeadOut])
def list_leads(
    caller: CurrentCaller,
    session: DbSession,
    settings: AppSettings,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    status: LeadStatus | None = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    owner_user_id: str | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="Part of the name or company.")] = None,
    include_deleted: bool = False,
) -> Page[LeadOut]:
    filters = service.LeadFilters(
        status=status, email=email, owner_user_id=filter_id(owner_user_id), q=q, include_deleted=include_deleted
    )
    rows, next_cursor = service.list_leads(session, caller, filters, cursor, limit)
    return Page[LeadOut](data=leads_out(session, caller, settings.bcc_domain, rows), next_cursor=next_cursor)


@router.post("/leads", response_model=LeadOut, status_code=status.HTTP_201_CREATED)
def create_lead(body: LeadIn, caller: CurrentCaller, session: DbSession, settings: AppSettings) -> LeadOut:
    """A lead needs a name and at least an e-mail address or a phone number."""
    return leads_out(session, caller, settings.bcc_domain, [service.create_lead(session, caller, body)])[0]


@router.get("/leads/{lead_id}", response_model=LeadOut)
def get_lead(lead_id: str, caller: CurrentCaller, session: DbSession, settings: AppSettings) -> LeadOut:
    found = service.get_lead(session, caller, parse_id(lead_id, "Lead"))
    return leads_out(session, caller, settings.bcc_domain, [found])[0]


@router.patch("/leads/{lead_id}", response_model=LeadOut)
def update_lead(
    lead_id: str, body: LeadPatch, caller: CurrentCaller, session: DbSession, settings: AppSettings
) -> LeadOut:
    found = service.update_lead(session, caller, parse_id(lead_id, "Lead"), body)
    return leads_out(session, caller, settings.bcc_domain, [found])[0]


@router.delete("/leads/{lead_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_lead(lead_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Soft delete: the lead's mail, activities and notes keep their link to it."""
    service.delete_lead(session, caller, parse_id(lead_id, "Lead"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/leads/{lead_id}/convert", response_model=LeadConversionOut)
def convert_lead(
    lead_id: str, caller: CurrentCaller, session: DbSession, settings: AppSettings, body: LeadConvertIn | None = None
) -> LeadConversionOut:
    """Turn the lead into a person (the existing one with its address, if any), an organization (by its e-mail
    domain or company name) and a deal in the pipeline's first stage. The lead's mail, activities and notes show
    on the new records from then on, and stay on the lead. Converting again answers the same and creates nothing."""
    done = service.convert_lead(session, caller, parse_id(lead_id, "Lead"), body or LeadConvertIn())
    lead = done.lead
    assert lead.converted_person_id is not None
    assert lead.converted_deal_id is not None
    return LeadConversionOut(
        lead=leads_out(session, caller, settings.bcc_domain, [lead])[0],
        person_id=str(lead.converted_person_id),
        organization_id=sid(lead.converted_organization_id),
        deal_id=str(lead.converted_deal_id),
        created_person=done.created_person,
        created_organization=done.created_organization,
        converted_now=done.converted_now,
    )


def leads_out(session: Session, caller: Caller, bcc_domain: str, rows: list[Lead]) -> list[LeadOut]:
    addresses = record_addresses(session, caller, bcc_domain, "lead", [(r.id, r.owner_user_id) for r in rows])
    return [
        LeadOut(
            id=str(r.id),
            name=r.name,
            company=r.company,
            source=r.source,
            status=r.status,
            email=r.email,
            phone=r.phone,
            value=r.value,
            currency=r.currency,
            owner_user_id=sid(r.owner_user_id),
            bcc_address=addresses[r.id],
            converted_at=r.converted_at,
            person_id=sid(r.converted_person_id),
            organization_id=sid(r.converted_organization_id),
            deal_id=sid(r.converted_deal_id),
            deleted_at=r.deleted_at,
            created_at=r.created_at,
            created_by=actor_out(r.created_by),
            updated_by=actor_out(r.updated_by),
            updated_at=r.updated_at,
        )
        for r in rows
    ]
