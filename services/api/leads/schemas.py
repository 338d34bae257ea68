"""Leads: someone who may become a customer, and the one-step conversion into a person, organization and deal."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, EmailStr, Field

from services.api.common import Schema
from services.api.crm.schemas import Currency, Money, Name, Phone, Ref, Title
from services.api.provenance import Actor
from shared.models import LeadStatus

# `converted` is reached only by converting (POST /v1/leads/{id}/convert), never set by hand.
SettableLeadStatus = Literal["new", "in_progress", "qualified", "lost"]


class LeadIn(Schema):
    name: Name
    company: str | None = Field(default=None, min_length=1, max_length=200)
    source: str | None = Field(default=None, min_length=1, max_length=200, description="Niche or source.")
    email: EmailStr | None = None
    phone: Phone | None = None
    status: SettableLeadStatus = "new"
    value: Money | None = Field(default=None, description="Estimated value.")
    currency: Currency | None = None
    owner_user_id: Ref | None = Field(default=None, description="Default: the token's user, if it has one.")


class LeadPatch(Schema):
    name: Name | None = None
    company: str | None = Field(default=None, min_length=1, max_length=200)
    source: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = None
    phone: Phone | None = None
    status: SettableLeadStatus | None = None
    value: Money | None = None
    currency: Currency | None = None
    owner_user_id: Ref | None = None


class LeadOut(BaseModel):
    id: str
    name: str
    company: str | None
    source: str | None
    status: LeadStatus
    email: str | None
    phone: str | None
    value: Decimal | None
    currency: str | None
    owner_user_id: str | None
    bcc_address: str | None = Field(
        description="Mail BCC'd to this address lands on the lead (`+lead-<id>` of the caller's or owner's "
        "Smart-BCC address); null without an owner, and for account tokens below `admin`."
    )
    converted_at: datetime | None
    person_id: str | None = Field(description="After conversion: the person it became (or was matched to).")
    organization_id: str | None
    deal_id: str | None
    deleted_at: datetime | None
    created_at: datetime
    created_by: Actor | None
    updated_by: Actor | None
    updated_at: datetime | None


class LeadConvertIn(Schema):
    pipeline_id: Ref | None = Field(default=None, description="Default: the account's oldest pipeline you can see.")
    deal_title: Title | None = Field(default=None, description="Default: the company, else the lead's name.")


class LeadConversionOut(BaseModel):
    lead: LeadOut
    person_id: str
    organization_id: str | None
    deal_id: str
    created_person: bool = Field(description="False when a person with the lead's address already existed.")
    created_organization: bool
    converted_now: bool = Field(description="False when the lead had already been converted (nothing was created).")
