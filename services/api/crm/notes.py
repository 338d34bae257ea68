"""Notes on persons, organizations, deals and leads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.access import deal_id_visible
from services.api.crm.refs import reference
from services.api.crm.schemas import NoteIn, NotePatch
from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import Problem, invalid, not_found
from services.api.provenance import stamp_created, stamp_updated
from shared.models import Deal, Lead, Note, Organization, Person

_TARGETS = ("person_id", "organization_id", "deal_id", "lead_id")


@dataclass(frozen=True)
class NoteFilters:
    person_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    lead_id: uuid.UUID | None = None


def list_notes(
    session: Session, caller: Caller, filters: NoteFilters, cursor: str | None, limit: int
) -> tuple[list[Note], str | None]:
    query = select(Note).where(Note.account_id == caller.account_id, deal_id_visible(caller, Note.deal_id))
    for column, value in (
        (Note.person_id, filters.person_id),
        (Note.organization_id, filters.organization_id),
        (Note.deal_id, filters.deal_id),
        (Note.lead_id, filters.lead_id),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = session.scalars(paginate(query, Note.created_at, Note.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda n: (n.created_at, n.id))


def get_note(session: Session, caller: Caller, note_id: uuid.UUID, *, for_update: bool = False) -> Note:
    query = select(Note).where(
        Note.account_id == caller.account_id, Note.id == note_id, deal_id_visible(caller, Note.deal_id)
    )
    note = session.scalars(query.with_for_update(of=Note) if for_update else query).one_or_none()
    if note is None:
        raise not_found("Note")
    return note


def create_note(session: Session, caller: Caller, body: NoteIn) -> Note:
    if all(getattr(body, field) is None for field in _TARGETS):
        raise Problem(
            422,
            "validation",
            "The request is not valid",
            "A note belongs to a person, an organization, a deal or a lead: give at least one of them.",
            errors=[{"field": field, "message": "one of these is required"} for field in _TARGETS],
        )
    note = Note(
        account_id=caller.account_id,
        content=body.content,
        person_id=reference(session, caller, Person, body.person_id, "person_id"),
        organization_id=reference(session, caller, Organization, body.organization_id, "organization_id"),
        deal_id=reference(session, caller, Deal, body.deal_id, "deal_id"),
        lead_id=reference(session, caller, Lead, body.lead_id, "lead_id"),
    )
    stamp_created(session, caller, note)
    session.add(note)
    session.flush()
    return note


def update_note(session: Session, caller: Caller, note_id: uuid.UUID, body: NotePatch) -> Note:
    note = get_note(session, caller, note_id, for_update=True)
    if "content" in body.model_fields_set:
        if body.content is None:
            raise invalid("content", "must not be null", "A note needs some text.")
        note.content = body.content
    stamp_updated(session, caller, note)
    return note


def delete_note(session: Session, caller: Caller, note_id: uuid.UUID) -> None:
    session.delete(get_note(session, caller, note_id, for_update=True))
