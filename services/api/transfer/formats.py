"""The CSV columns of each kind of record: how a row becomes a request body, and how a record becomes a row.

Import and export use the same columns, so an exported file imports back unchanged. A row is applied through the
same service functions as the API (validation, provenance, deal events, webhooks), never around them.

Conventions: lists (e-mails, domains) are separated by `;`; dates are `YYYY-MM-DD` (datetimes ISO 8601); references
to other records use their `…_external_id` (or `…_id`); an empty cell clears the field, except `won_date` and
`lost_date`, where it means "keep the date the deal has, or stamp today's".
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.api.access import deal_visible, pipeline_visible
from services.api.crm import deals, organizations, persons
from services.api.crm.refs import claim_external_id
from services.api.crm.schemas import DealIn, DealPatch, OrganizationIn, OrganizationPatch, PersonIn, PersonPatch
from services.api.custom_fields.service import FILTER_PREFIX as CUSTOM_PREFIX
from services.api.custom_fields.service import definitions
from services.api.deps import Caller
from services.api.leads import service as leads
from services.api.leads.schemas import LeadIn, LeadPatch
from shared.models import CustomFieldEntity, Deal, Lead, LeadStatus, Organization, Person, Pipeline, Stage, User

Record = Person | Organization | Deal | Lead
_LIST_SEPARATOR = re.compile(r"[;,\s]+")


class Kind(enum.StrEnum):
    persons = "persons"
    organizations = "organizations"
    deals = "deals"
    leads = "leads"


class RowError(Exception):
    """What is wrong with one row, in words for people; the row is rejected, the file goes on."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass
class Lookups:
    """Names and external ids of the account, read once per file (and extended as rows create records)."""

    session: Session
    caller: Caller
    cache: dict[tuple[str, str], uuid.UUID | None] = field(default_factory=dict)

    def by_external_id(
        self, model: type[Person] | type[Organization] | type[Deal] | type[Lead], value: str
    ) -> uuid.UUID | None:
        key = (model.__tablename__, value)
        if key not in self.cache:
            self.cache[key] = self.session.scalar(
                select(model.id).where(model.account_id == self.caller.account_id, model.external_id == value)
            )
        return self.cache[key]

    def remember(self, record: Record) -> None:
        if record.external_id:
            self.cache[(type(record).__tablename__, record.external_id)] = record.id

    def user_by_email(self, email: str) -> uuid.UUID | None:
        return self.session.scalar(
            select(User.id).where(User.account_id == self.caller.account_id, func.lower(User.email) == email.lower())
        )

    def pipeline_by_name(self, name: str) -> uuid.UUID | None:
        return self.session.scalar(
            select(Pipeline.id)
            .where(
                Pipeline.account_id == self.caller.account_id,
                func.lower(Pipeline.name) == name.lower(),
                pipeline_visible(self.caller),
            )
            .order_by(Pipeline.created_at)
            .limit(1)
        )

    def stages_by_name(self, name: str, pipeline_id: uuid.UUID | None) -> list[uuid.UUID]:
        query = select(Stage.id).where(
            Stage.account_id == self.caller.account_id, func.lower(Stage.name) == name.lower()
        )
        if pipeline_id is not None:
            query = query.where(Stage.pipeline_id == pipeline_id)
        return list(self.session.scalars(query).all())


@dataclass(frozen=True)
class Format:
    kind: Kind
    entity: CustomFieldEntity | None  # whose custom fields the file may carry
    required: tuple[str, ...]
    columns: tuple[str, ...]  # every column it reads and writes, besides `custom.<key>`
    body: Callable[[Mapping[str, str], Lookups, Record | None], dict[str, Any]]
    create: Callable[[Session, Caller, dict[str, Any]], Record]
    update: Callable[[Session, Caller, Record, dict[str, Any]], Record]
    rows: Callable[[Session, Caller, Sequence[Record]], list[dict[str, str]]]
    model: type[Person] | type[Organization] | type[Deal] | type[Lead]


def _cell(row: Mapping[str, str], column: str) -> str | None:
    value = row.get(column)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _list(value: str | None) -> list[str]:
    return [part for part in _LIST_SEPARATOR.split(value or "") if part]


def _custom(row: Mapping[str, str]) -> dict[str, Any]:
    return {name[len(CUSTOM_PREFIX) :]: _cell(row, name) for name in row if name and name.startswith(CUSTOM_PREFIX)}


def _reference(
    row: Mapping[str, str],
    lookups: Lookups,
    model: type[Person] | type[Organization] | type[Deal] | type[Lead],
    stem: str,
    errors: list[str],
) -> tuple[bool, str | None]:
    """(given, id) from `<stem>_id` or `<stem>_external_id`; not given when neither column is in the file."""
    if f"{stem}_external_id" in row and _cell(row, f"{stem}_external_id") is not None:
        external = _cell(row, f"{stem}_external_id") or ""
        found = lookups.by_external_id(model, external)
        if found is None:
            errors.append(f"{stem}_external_id: no {stem} with external id {external!r}")
        return True, None if found is None else str(found)
    if f"{stem}_id" in row:
        return True, _cell(row, f"{stem}_id")
    return f"{stem}_external_id" in row, None


def _when(value: str | None, column: str, errors: list[str]) -> datetime | None:
    """A date (midnight UTC) or a zoned ISO datetime."""
    if value is None:
        return None
    try:
        if len(value) <= 10:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors.append(f"{column}: not a date like 2026-03-31 (or an ISO datetime)")
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _owner(row: Mapping[str, str], lookups: Lookups, body: dict[str, Any], errors: list[str]) -> None:
    if "owner_email" not in row:
        return
    email = _cell(row, "owner_email")
    if email is None:
        body["owner_user_id"] = None
        return
    user_id = lookups.user_by_email(email)
    if user_id is None:
        errors.append(f"owner_email: no user {email} in this account")
    else:
        body["owner_user_id"] = str(user_id)


def _plain(row: Mapping[str, str], body: dict[str, Any], columns: Sequence[str]) -> None:
    for column in columns:
        if column in row:
            body[column] = _cell(row, column)


def _finish(row: Mapping[str, str], body: dict[str, Any], errors: list[str], *, custom: bool) -> dict[str, Any]:
    if "external_id" in row:
        body["external_id"] = _cell(row, "external_id")
    if custom:
        values = _custom(row)
        if values:
            body["custom_fields"] = values
    if errors:
        raise RowError(errors)
    return body


# --- organizations ---------------------------------------------------------------------------------------------


def _organization_body(row: Mapping[str, str], lookups: Lookups, existing: Record | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    _plain(row, body, ("name",))
    if "domains" in row:
        body["domains"] = _list(_cell(row, "domains"))
    return _finish(row, body, [], custom=True)


def _organization_rows(session: Session, caller: Caller, records: Sequence[Record]) -> list[dict[str, str]]:
    rows = [r for r in records if isinstance(r, Organization)]
    domains = organizations.domains_of(session, rows)
    return [
        {
            "id": str(o.id),
            "external_id": o.external_id or "",
            "name": o.name,
            "domains": "; ".join(domains[o.id]),
            **_custom_cells(o),
        }
        for o in rows
    ]


# --- persons ---------------------------------------------------------------------------------------------------


def _person_body(row: Mapping[str, str], lookups: Lookups, existing: Record | None) -> dict[str, Any]:
    errors: list[str] = []
    body: dict[str, Any] = {}
    _plain(row, body, ("name", "phone"))
    if "emails" in row:
        body["emails"] = _list(_cell(row, "emails"))
    given, organization_id = _reference(row, lookups, Organization, "organization", errors)
    if given:
        body["organization_id"] = organization_id
    return _finish(row, body, errors, custom=True)


def _person_rows(session: Session, caller: Caller, records: Sequence[Record]) -> list[dict[str, str]]:
    rows = [r for r in records if isinstance(r, Person)]
    emails = persons.emails_of(session, rows)
    organization_ids = _external_ids(session, Organization, {p.organization_id for p in rows})
    return [
        {
            "id": str(p.id),
            "external_id": p.external_id or "",
            "name": p.name,
            "emails": "; ".join(emails[p.id]),
            "phone": p.phone or "",
            "organization_id": _s(p.organization_id),
            "organization_external_id": organization_ids.get(p.organization_id, ""),
            **_custom_cells(p),
        }
        for p in rows
    ]


# --- deals -----------------------------------------------------------------------------------------------------


def _deal_body(row: Mapping[str, str], lookups: Lookups, existing: Record | None) -> dict[str, Any]:
    errors: list[str] = []
    body: dict[str, Any] = {}
    _plain(row, body, ("title", "value", "currency", "expected_close_date", "recurrence", "visibility"))
    if "status" in row:
        body["status"] = (_cell(row, "status") or "open").lower()
    for stem, model in (("person", Person), ("organization", Organization)):
        given, record_id = _reference(row, lookups, model, stem, errors)
        if given:
            body[f"{stem}_id"] = record_id
    _owner(row, lookups, body, errors)
    pipeline_id: uuid.UUID | None = None
    if _cell(row, "pipeline"):
        name = _cell(row, "pipeline") or ""
        pipeline_id = lookups.pipeline_by_name(name)
        if pipeline_id is None:
            errors.append(f"pipeline: no pipeline named {name!r}")
        else:
            body["pipeline_id"] = str(pipeline_id)
    if _cell(row, "stage"):
        name = _cell(row, "stage") or ""
        stages = lookups.stages_by_name(name, pipeline_id)
        if len(stages) == 1:
            body["stage_id"] = str(stages[0])
        elif not stages:
            errors.append(f"stage: no stage named {name!r}" + (" in this pipeline" if pipeline_id else ""))
        else:
            errors.append(f"stage: several pipelines have a stage {name!r}; give the pipeline too")
    # An empty won/lost date keeps the date the deal has (or, when it becomes won or lost, stamps the import's).
    for column, target in (("won_date", "won_at"), ("lost_date", "lost_at")):
        when = _when(_cell(row, column), column, errors)
        if when is not None:
            body[target] = when
    return _finish(row, body, errors, custom=True)


def _deal_rows(session: Session, caller: Caller, records: Sequence[Record]) -> list[dict[str, str]]:
    rows = [r for r in records if isinstance(r, Deal)]
    person_ids = _external_ids(session, Person, {d.person_id for d in rows})
    organization_ids = _external_ids(session, Organization, {d.organization_id for d in rows})
    pipelines = _names(session, Pipeline, {d.pipeline_id for d in rows})
    stages = _names(session, Stage, {d.stage_id for d in rows})
    owners = _emails(session, {d.owner_user_id for d in rows})
    return [
        {
            "id": str(d.id),
            "external_id": d.external_id or "",
            "title": d.title,
            "status": d.status,
            "value": "" if d.value is None else str(d.value),
            "currency": d.currency or "",
            "pipeline": pipelines.get(d.pipeline_id, ""),
            "stage": stages.get(d.stage_id, ""),
            "person_id": _s(d.person_id),
            "person_external_id": person_ids.get(d.person_id, ""),
            "organization_id": _s(d.organization_id),
            "organization_external_id": organization_ids.get(d.organization_id, ""),
            "owner_email": owners.get(d.owner_user_id, ""),
            "expected_close_date": "" if d.expected_close_date is None else d.expected_close_date.isoformat(),
            "won_date": "" if d.won_at is None else d.won_at.isoformat(),
            "lost_date": "" if d.lost_at is None else d.lost_at.isoformat(),
            "recurrence": d.recurrence or "",
            "visibility": d.visibility,
            **_custom_cells(d),
        }
        for d in rows
    ]


# --- leads -----------------------------------------------------------------------------------------------------


def _lead_body(row: Mapping[str, str], lookups: Lookups, existing: Record | None) -> dict[str, Any]:
    errors: list[str] = []
    body: dict[str, Any] = {}
    _plain(row, body, ("name", "company", "source", "email", "phone", "value", "currency"))
    status = (_cell(row, "status") or "").lower()
    if status == LeadStatus.converted:
        # Converting makes a person and a deal; a file cannot, so a converted lead's status is left as it is.
        if existing is None:
            errors.append("status: leads become `converted` by converting them (POST /v1/leads/{id}/convert)")
    elif "status" in row:
        body["status"] = status or "new"
    _owner(row, lookups, body, errors)
    return _finish(row, body, errors, custom=False)


def _lead_rows(session: Session, caller: Caller, records: Sequence[Record]) -> list[dict[str, str]]:
    rows = [r for r in records if isinstance(r, Lead)]
    owners = _emails(session, {lead.owner_user_id for lead in rows})
    return [
        {
            "id": str(lead.id),
            "external_id": lead.external_id or "",
            "name": lead.name,
            "company": lead.company or "",
            "source": lead.source or "",
            "email": lead.email or "",
            "phone": lead.phone or "",
            "status": lead.status,
            "value": "" if lead.value is None else str(lead.value),
            "currency": lead.currency or "",
            "owner_email": owners.get(lead.owner_user_id, ""),
        }
        for lead in rows
    ]


def _create_lead(session: Session, caller: Caller, body: dict[str, Any]) -> Record:
    external_id = body.pop("external_id", None)
    lead = leads.create_lead(session, caller, LeadIn.model_validate(body))
    _claim(session, caller, lead, external_id)
    return lead


def _update_lead(session: Session, caller: Caller, record: Record, body: dict[str, Any]) -> Record:
    given = "external_id" in body
    external_id = body.pop("external_id", None)
    lead = leads.update_lead(session, caller, record.id, LeadPatch.model_validate(body))
    if given:
        _claim(session, caller, lead, external_id)
    return lead


def _claim(session: Session, caller: Caller, lead: Lead, external_id: str | None) -> None:
    claim_external_id(session, caller, lead, external_id)


# --- shared helpers --------------------------------------------------------------------------------------------


def _s(value: uuid.UUID | None) -> str:
    return "" if value is None else str(value)


def _custom_cells(record: Person | Organization | Deal) -> dict[str, str]:
    return {f"{CUSTOM_PREFIX}{key}": _text(value) for key, value in (record.custom_fields or {}).items()}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _external_ids(
    session: Session, model: type[Person] | type[Organization], ids: set[uuid.UUID | None]
) -> dict[uuid.UUID | None, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = session.execute(select(model.id, model.external_id).where(model.id.in_(wanted)))
    return {row.id: row.external_id or "" for row in rows}


def _names(
    session: Session, model: type[Pipeline] | type[Stage], ids: set[uuid.UUID | None]
) -> dict[uuid.UUID | None, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {row.id: row.name for row in session.execute(select(model.id, model.name).where(model.id.in_(wanted)))}


def _emails(session: Session, ids: set[uuid.UUID | None]) -> dict[uuid.UUID | None, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {row.id: row.email for row in session.execute(select(User.id, User.email).where(User.id.in_(wanted)))}


FORMATS: dict[Kind, Format] = {
    Kind.organizations: Format(
        kind=Kind.organizations,
        entity=CustomFieldEntity.organization,
        required=("name",),
        columns=("id", "external_id", "name", "domains"),
        body=_organization_body,
        create=lambda s, c, b: organizations.create_organization(s, c, OrganizationIn.model_validate(b)),
        update=lambda s, c, r, b: organizations.update_organization(s, c, r.id, OrganizationPatch.model_validate(b)),
        rows=_organization_rows,
        model=Organization,
    ),
    Kind.persons: Format(
        kind=Kind.persons,
        entity=CustomFieldEntity.person,
        required=("name",),
        columns=("id", "external_id", "name", "emails", "phone", "organization_id", "organization_external_id"),
        body=_person_body,
        create=lambda s, c, b: persons.create_person(s, c, PersonIn.model_validate(b)),
        update=lambda s, c, r, b: persons.update_person(s, c, r.id, PersonPatch.model_validate(b)),
        rows=_person_rows,
        model=Person,
    ),
    Kind.deals: Format(
        kind=Kind.deals,
        entity=CustomFieldEntity.deal,
        required=("title",),
        columns=(
            "id",
            "external_id",
            "title",
            "status",
            "value",
            "currency",
            "pipeline",
            "stage",
            "person_id",
            "person_external_id",
            "organization_id",
            "organization_external_id",
            "owner_email",
            "expected_close_date",
            "won_date",
            "lost_date",
            "recurrence",
            "visibility",
        ),
        body=_deal_body,
        create=lambda s, c, b: deals.create_deal(s, c, DealIn.model_validate(b)),
        update=lambda s, c, r, b: deals.update_deal(s, c, r.id, DealPatch.model_validate(b)),
        rows=_deal_rows,
        model=Deal,
    ),
    Kind.leads: Format(
        kind=Kind.leads,
        entity=None,
        required=("name",),
        columns=(
            "id",
            "external_id",
            "name",
            "company",
            "source",
            "email",
            "phone",
            "status",
            "value",
            "currency",
            "owner_email",
        ),
        body=_lead_body,
        create=_create_lead,
        update=_update_lead,
        rows=_lead_rows,
        model=Lead,
    ),
}


def header_of(session: Session, caller: Caller, fmt: Format) -> list[str]:
    """The export columns: the format's, then one per custom field of the entity."""
    custom = (
        []
        if fmt.entity is None
        else [CUSTOM_PREFIX + key for key in definitions(session, caller.account_id, fmt.entity)]
    )
    return [*fmt.columns, *custom]


def visible_records(session: Session, caller: Caller, fmt: Format) -> Any:
    """The records an export writes: live ones the caller may see, oldest first (a stable order for diffs)."""
    model = fmt.model
    query = select(model).where(model.account_id == caller.account_id, model.deleted_at.is_(None))
    if model is Deal:
        query = query.where(deal_visible(caller))
    return query.order_by(model.created_at, model.id)
