"""CRM records: persons, organizations, pipelines and stages, deals, activities."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, AwareDatetime, BaseModel, EmailStr, Field

from services.api.common import Schema
from services.api.provenance import Actor
from shared.models import CreatedFrom, DealRecurrence, DealStatus, DealVisibility, OrganizationRule, PersonRule

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")


def _domain(value: str) -> str:
    domain = value.strip().lstrip("@").rstrip(".").lower()
    if not _DOMAIN.match(domain):
        raise ValueError("not a domain name like example.com")
    return domain


def _time_zone(value: str) -> str:
    if value not in _zones():
        raise ValueError("not an IANA time zone like Europe/Berlin")
    return value


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


Domain = Annotated[str, AfterValidator(_domain)]
TimeZone = Annotated[
    str, Field(max_length=64, description="IANA time zone, e.g. Europe/Berlin."), AfterValidator(_time_zone)
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Title = Annotated[str, Field(min_length=1, max_length=500)]
Phone = Annotated[str, Field(min_length=1, max_length=50)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. EUR.")]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2)]
Position = Annotated[int, Field(ge=0, le=1_000_000)]
Ref = Annotated[str, Field(max_length=100, description="An id of this account.")]
CustomValues = Annotated[
    dict[str, Any],
    Field(
        max_length=200,
        description="Values of the account's custom fields by key (see /v1/custom-fields); only the keys sent "
        "change, null removes one.",
    ),
]
ExternalId = Annotated[
    str, Field(min_length=1, max_length=200, description="The record's id in another system; unique per account.")
]
Probability = Annotated[
    int, Field(ge=0, le=100, description="Percent chance a deal in this stage is won; weights the forecast.")
]


# --- persons ---------------------------------------------------------------------------------------------------


class PersonIn(Schema):
    name: Name
    emails: list[EmailStr] = Field(default_factory=list, max_length=50)
    phone: Phone | None = None
    organization_id: Ref | None = None
    custom_fields: CustomValues | None = None
    external_id: ExternalId | None = None


class PersonPatch(Schema):
    name: Name | None = None
    emails: list[EmailStr] | None = Field(default=None, max_length=50, description="Replaces the list.")
    phone: Phone | None = None
    organization_id: Ref | None = None
    custom_fields: CustomValues | None = None
    external_id: ExternalId | None = None


class PersonOut(BaseModel):
    id: str
    name: str
    emails: list[str]
    phone: str | None
    organization_id: str | None
    created_from: CreatedFrom = Field(description="`api`, `email` or `lead`.")
    created_by_rule: PersonRule | None = Field(description="For persons made from e-mail: the matcher rule.")
    created_by_message_id: str | None = Field(description="…and the message that made it.")
    deleted_at: datetime | None = Field(description="Deleted persons keep their history and are never re-created.")
    created_at: datetime
    custom_fields: dict[str, Any]
    external_id: str | None
    created_by: Actor | None = Field(description="Who created it: a user, an integration (token) or the matcher.")
    updated_by: Actor | None = Field(description="Who changed it last.")
    updated_at: datetime | None


# --- organizations ---------------------------------------------------------------------------------------------


class OrganizationIn(Schema):
    name: Name
    domains: list[Domain] = Field(default_factory=list, max_length=50)
    custom_fields: CustomValues | None = None
    external_id: ExternalId | None = None


class OrganizationPatch(Schema):
    name: Name | None = None
    domains: list[Domain] | None = Field(default=None, max_length=50, description="Replaces the list.")
    custom_fields: CustomValues | None = None
    external_id: ExternalId | None = None


class OrganizationOut(BaseModel):
    id: str
    name: str
    domains: list[str]
    created_from: CreatedFrom
    created_by_rule: OrganizationRule | None
    created_by_message_id: str | None
    deleted_at: datetime | None
    created_at: datetime
    custom_fields: dict[str, Any]
    external_id: str | None
    created_by: Actor | None = Field(description="Who created it: a user, an integration (token) or the matcher.")
    updated_by: Actor | None = Field(description="Who changed it last.")
    updated_at: datetime | None


# --- pipelines -------------------------------------------------------------------------------------------------


class StageIn(Schema):
    name: Name
    position: Position | None = Field(default=None, description="Order in the pipeline; default: last.")
    probability: Probability | None = None


class StagePatch(Schema):
    name: Name | None = None
    position: Position | None = None
    probability: Probability | None = None


class StageOut(BaseModel):
    id: str
    pipeline_id: str
    name: str
    position: int
    probability: int | None


STANDARD_STAGES = ("New", "Qualified", "Proposal", "Negotiation", "Won", "Lost")


class PipelineIn(Schema):
    name: Name
    stages: list[Name] = Field(
        default_factory=list,
        max_length=50,
        description="Stage names, in order; omitted or empty: " + ", ".join(STANDARD_STAGES) + ".",
    )


class PipelinePatch(Schema):
    name: Name | None = None


class PipelineOut(BaseModel):
    id: str
    name: str
    stages: list[StageOut] = Field(description="In order.")
    restricted: bool = Field(description="Only `member_user_ids` see and edit its deals (user-bound tokens).")
    member_user_ids: list[str]
    created_at: datetime


class PipelineAccessIn(Schema):
    restricted: bool = Field(description="False: every user of the account; true: only `member_user_ids`.")
    member_user_ids: list[Ref] = Field(default_factory=list, max_length=1000)


# --- deals -----------------------------------------------------------------------------------------------------


class DealIn(Schema):
    title: Title
    person_id: Ref | None = None
    organization_id: Ref | None = None
    pipeline_id: Ref | None = None
    stage_id: Ref | None = Field(default=None, description="Sets the pipeline too, if omitted.")
    status: DealStatus = DealStatus.open
    value: Money | None = None
    currency: Currency | None = None
    expected_close_date: date | None = None
    custom_fields: CustomValues | None = None
    external_id: ExternalId | None = None
    recurrence: DealRecurrence | None = Field(
        default=None, description="Once won, the next deal of the series opens when its period comes due."
    )
    owner_user_id: Ref | None = Field(default=None, description="Default: the token's user, if it has one.")
    visibility: DealVisibility = Field(default=DealVisibility.shared, description="`private`: only the owner sees it.")
    won_at: AwareDatetime | None = Field(default=None, description="For imports; default: when it becomes won.")
    lost_at: AwareDatetime | None = Field(default=None, description="For imports; default: when it becomes lost.")


class DealPatch(Schema):
    title: Title | None = None
    person_id: Ref | None = None
    organization_id: Ref | None = None
    pipeline_id: Ref | None = None
    stage_id: Ref | None = None
    status: DealStatus | None = None
    value: Money | None = None
    currency: Currency | None = None
    expected_close_date: date | None = None
    custom_fields: CustomValues | None = None
    external_id: ExternalId | None = None
    recurrence: DealRecurrence | None = Field(
        default=None, description="Once won, the next deal of the series opens when its period comes due."
    )
    owner_user_id: Ref | None = None
    visibility: DealVisibility | None = None
    won_at: AwareDatetime | None = None
    lost_at: AwareDatetime | None = None


class DealOut(BaseModel):
    id: str
    title: str
    person_id: str | None
    organization_id: str | None
    pipeline_id: str | None
    stage_id: str | None
    status: DealStatus
    value: Decimal | None
    currency: str | None
    expected_close_date: date | None
    won_at: datetime | None
    lost_at: datetime | None
    owner_user_id: str | None
    visibility: DealVisibility
    bcc_address: str | None = Field(
        description="Mail BCC'd to this address lands on the deal: the caller's (or the owner's) Smart-BCC address "
        "with `+deal-<id>`; null without an owner, and for account tokens below `admin`."
    )
    deleted_at: datetime | None = Field(description="Deleted deals keep their history (events, mail, notes).")
    created_at: datetime
    custom_fields: dict[str, Any]
    external_id: str | None
    recurrence: DealRecurrence | None
    recurs_from_deal_id: str | None = Field(description="The deal of the series this one follows.")
    created_by: Actor | None = Field(description="Who created it: a user, an integration (token) or the matcher.")
    updated_by: Actor | None = Field(description="Who changed it last.")
    updated_at: datetime | None


# --- activities ------------------------------------------------------------------------------------------------

ActivityTypeKey = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z_]{0,31}$", description="One of the account's activity types: call, meeting, task, …"),
]
Duration = Annotated[int, Field(ge=1, le=60 * 24 * 31, description="Minutes.")]


class ActivityIn(Schema):
    type: ActivityTypeKey
    subject: Title
    note: str | None = Field(default=None, max_length=20_000)
    due_at: AwareDatetime | None = None
    time_zone: TimeZone | None = Field(default=None, description="The zone `due_at` is meant in (for calendars).")
    duration_minutes: Duration | None = None
    done: bool = False
    user_id: Ref | None = Field(default=None, description="Whose calendar it is on; default: the token's user.")
    person_id: Ref | None = None
    organization_id: Ref | None = None
    deal_id: Ref | None = Field(default=None, description="Also shows on the deal's person and organization.")
    lead_id: Ref | None = None


class ActivityPatch(Schema):
    type: ActivityTypeKey | None = None
    subject: Title | None = None
    note: str | None = Field(default=None, max_length=20_000)
    due_at: AwareDatetime | None = None
    time_zone: TimeZone | None = None
    duration_minutes: Duration | None = None
    done: bool | None = None
    user_id: Ref | None = None
    person_id: Ref | None = None
    organization_id: Ref | None = None
    deal_id: Ref | None = None
    lead_id: Ref | None = None


class ActivityOut(BaseModel):
    id: str
    type: str
    subject: str
    note: str | None
    due_at: datetime | None
    time_zone: str | None
    duration_minutes: int | None
    done: bool
    done_at: datetime | None
    user_id: str | None
    person_id: str | None
    organization_id: str | None
    deal_id: str | None
    lead_id: str | None
    created_at: datetime
    created_by: Actor | None = Field(description="Who created it: a user, an integration (token) or the matcher.")
    updated_by: Actor | None = Field(description="Who changed it last.")
    updated_at: datetime | None


class ActivityTypeIn(Schema):
    key: ActivityTypeKey
    name: Name


class ActivityTypePatch(Schema):
    name: Name | None = None
    active: bool | None = Field(default=None, description="Retired types stay on old activities only.")


class ActivityTypeOut(BaseModel):
    key: str
    name: str
    active: bool


# --- notes -----------------------------------------------------------------------------------------------------

NoteText = Annotated[str, Field(min_length=1, max_length=100_000)]


class NoteIn(Schema):
    content: NoteText
    person_id: Ref | None = None
    organization_id: Ref | None = None
    deal_id: Ref | None = None
    lead_id: Ref | None = None


class NotePatch(Schema):
    content: NoteText | None = None


class NoteOut(BaseModel):
    id: str
    content: str
    person_id: str | None
    organization_id: str | None
    deal_id: str | None
    lead_id: str | None
    created_at: datetime
    created_by: Actor | None = Field(description="Who created it: a user, an integration (token) or the matcher.")
    updated_by: Actor | None = Field(description="Who changed it last.")
    updated_at: datetime | None


# --- organization relations ------------------------------------------------------------------------------------

RelationType = Literal["parent", "subsidiary", "related"]


class OrganizationRelationIn(Schema):
    organization_id: Ref = Field(description="The other organization.")
    type: RelationType = Field(description="What the other organization is to this one.")


class OrganizationRelationOut(BaseModel):
    id: str
    organization_id: str = Field(description="The other organization.")
    organization_name: str
    type: RelationType = Field(description="What the other organization is to this one.")
    created_at: datetime
    created_by: Actor | None
