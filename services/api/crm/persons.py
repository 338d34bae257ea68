"""Persons and their e-mail addresses. Deleting is a soft delete: history stays, the matcher never re-creates."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.api.crm.refs import claim_external_id, reference
from services.api.crm.schemas import PersonIn, PersonPatch
from services.api.custom_fields import service as custom_fields
from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import Problem, conflict, invalid, not_found
from services.api.provenance import stamp_created, stamp_updated
from shared.addresses import normalize_address
from shared.events import PersonCreated, emit
from shared.models import CreatedFrom, CustomFieldEntity, Organization, OrganizationRule, Person, PersonEmail


@dataclass(frozen=True)
class PersonFilters:
    email: str | None = None
    organization_id: uuid.UUID | None = None
    q: str | None = None
    include_deleted: bool = False
    custom: Sequence[ColumnElement[bool]] = ()


def list_persons(
    session: Session, caller: Caller, filters: PersonFilters, cursor: str | None, limit: int
) -> tuple[list[Person], str | None]:
    query = select(Person).where(Person.account_id == caller.account_id)
    if not filters.include_deleted:
        query = query.where(Person.deleted_at.is_(None))
    if filters.email is not None:
        query = query.where(
            Person.id.in_(
                select(PersonEmail.person_id).where(
                    PersonEmail.account_id == caller.account_id, PersonEmail.address == normalize_address(filters.email)
                )
            )
        )
    if filters.organization_id is not None:
        query = query.where(Person.organization_id == filters.organization_id)
    if filters.q:
        query = query.where(Person.name.ilike("%" + escape_like(filters.q) + "%", escape="\\"))
    query = query.where(*filters.custom)
    rows = session.scalars(paginate(query, Person.created_at, Person.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda p: (p.created_at, p.id))


def get_person(session: Session, caller: Caller, person_id: uuid.UUID, *, for_update: bool = False) -> Person:
    query = select(Person).where(Person.account_id == caller.account_id, Person.id == person_id)
    person = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if person is None:
        raise not_found("Person")
    return person


def emails_of(session: Session, persons: Sequence[Person]) -> dict[uuid.UUID, list[str]]:
    emails: dict[uuid.UUID, list[str]] = defaultdict(list)
    for row in session.execute(
        select(PersonEmail.person_id, PersonEmail.address)
        .where(PersonEmail.person_id.in_([p.id for p in persons]))
        .order_by(PersonEmail.address)
    ):
        emails[row.person_id].append(row.address)
    return emails


def needs_email_or_phone(what: str, email_field: str) -> Problem:
    """The help pages' rule for contacts and leads: someone you cannot reach is not worth a record."""
    return Problem(
        422,
        "validation",
        "The request is not valid",
        f"Can't save {what}: it needs at least an email or a phone number.",
        errors=[
            {"field": email_field, "message": "an email or a phone number is required"},
            {"field": "phone", "message": "an email or a phone number is required"},
        ],
    )


def create_person(session: Session, caller: Caller, body: PersonIn) -> Person:
    if not body.emails and not body.phone:
        raise needs_email_or_phone("a person", "emails")
    person = Person(
        account_id=caller.account_id,
        name=body.name,
        phone=body.phone,
        organization_id=reference(session, caller, Organization, body.organization_id, "organization_id"),
        created_from=CreatedFrom.api,
    )
    custom_fields.apply(session, caller.account_id, CustomFieldEntity.person, person, body.custom_fields)
    claim_external_id(session, caller, person, body.external_id)
    stamp_created(session, caller, person)
    session.add(person)
    session.flush()
    add_emails(session, caller, person, [str(e) for e in body.emails])
    emit(
        session,
        caller.account_id,
        PersonCreated(
            person_id=person.id,
            addresses=sorted({normalize_address(str(e)) for e in body.emails}),
            created_from=CreatedFrom.api,
        ),
    )
    return person


def update_person(session: Session, caller: Caller, person_id: uuid.UUID, body: PersonPatch) -> Person:
    person = get_person(session, caller, person_id, for_update=True)
    if person.deleted_at is not None:
        raise conflict("This person was deleted; deleted persons keep their history but cannot be changed.")
    given = body.model_fields_set
    if "name" in given:
        if body.name is None:
            raise invalid("name", "must not be null", "A person needs a name.")
        person.name = body.name
    if "phone" in given:
        person.phone = body.phone
    if "organization_id" in given:
        person.organization_id = reference(session, caller, Organization, body.organization_id, "organization_id")
        person.organization_rule = None if person.organization_id is None else OrganizationRule.user
    if "emails" in given:
        wanted = list(dict.fromkeys(normalize_address(str(e)) for e in body.emails or []))
        session.execute(
            delete(PersonEmail).where(PersonEmail.person_id == person.id, PersonEmail.address.not_in(wanted))
        )
        current = set(emails_of(session, [person])[person.id])
        add_emails(session, caller, person, [a for a in wanted if a not in current])
    if not person.phone and not emails_of(session, [person])[person.id]:
        raise needs_email_or_phone("this person", "emails")
    custom_fields.apply(session, caller.account_id, CustomFieldEntity.person, person, body.custom_fields)
    if "external_id" in given:
        claim_external_id(session, caller, person, body.external_id)
    stamp_updated(session, caller, person)
    return person


def delete_person(session: Session, caller: Caller, person_id: uuid.UUID) -> None:
    """Soft delete. Its addresses stay with the tombstone, which is how the matcher knows not to re-create it."""
    person = get_person(session, caller, person_id, for_update=True)
    if person.deleted_at is None:
        person.deleted_at = datetime.now(UTC)
        stamp_updated(session, caller, person)


def add_emails(session: Session, caller: Caller, person: Person, addresses: list[str]) -> None:
    for address in dict.fromkeys(normalize_address(a) for a in addresses):
        inserted = session.execute(
            insert(PersonEmail)
            .values(id=uuid.uuid4(), account_id=caller.account_id, person_id=person.id, address=address)
            .on_conflict_do_nothing()
            .returning(PersonEmail.id)
        ).scalar()
        if inserted is None:
            raise conflict(f"{address} already belongs to another person (possibly a deleted one).")


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
