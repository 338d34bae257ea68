"""Timelines of a person, organization or deal: e-mail, activities and deal events, newest first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path

from services.api.common import EmailAddress, Page, sid
from services.api.deps import CurrentCaller, DbSession, parse_id
from services.api.mailbox.service import Owner
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from services.api.problems import ProblemDetail
from services.api.provenance import actor_out
from services.api.timelines import service
from services.api.timelines.schemas import ActivityEntry, DealEventEntry, MessageEntry, NoteEntry, TimelineEntry
from services.api.timelines.service import TimelinePage

router = APIRouter(prefix="/v1", tags=["timelines"])

PREVIEW_CHARS = 280


def _timeline(owner: Owner) -> Callable[..., Page[TimelineEntry]]:
    def timeline(
        owner_id: str,
        caller: CurrentCaller,
        session: DbSession,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Page[TimelineEntry]:
        found = service.timeline(session, caller, owner, parse_id(owner_id, owner.value.capitalize()), cursor, limit)
        return Page[TimelineEntry](data=_entries(found), next_cursor=found.next_cursor)

    # Named after the owner in the path (`person_id`…); set here because the name is only known at run time.
    timeline.__annotations__["owner_id"] = Annotated[str, Path(alias=f"{owner.value}_id")]
    timeline.__doc__ = (
        f"The {owner.value}'s e-mail, activities, notes and deal events, newest first; each with who made it."
    )
    return timeline


for _owner, _path in (
    (Owner.person, "persons"),
    (Owner.organization, "organizations"),
    (Owner.deal, "deals"),
    (Owner.lead, "leads"),
):
    router.add_api_route(
        f"/{_path}/{{{_owner.value}_id}}/timeline",
        _timeline(_owner),
        methods=["GET"],
        response_model=Page[TimelineEntry],
        response_model_by_alias=True,
        name=f"{_owner.value}_timeline",
        responses={404: {"model": ProblemDetail, "description": f"No such {_owner.value} in your account."}},
    )


def _entries(found: TimelinePage) -> list[TimelineEntry]:
    entries = []
    for row in found.rows:
        entry = TimelineEntry(kind=row.kind, id=str(row.id), at=row.at)  # type: ignore[arg-type]  # from the UNION
        if row.kind == "message":
            m = found.messages[row.id]
            preview = m.new_text if m.new_text is not None else m.text_body
            entry.message = MessageEntry(
                id=str(m.id),
                thread_id=str(m.thread_id),
                subject=m.subject,
                sender=EmailAddress(name=m.from_name, address=m.from_address) if m.from_address else None,
                direction=m.direction,
                kind=m.kind,
                preview=None if preview is None else preview.strip()[:PREVIEW_CHARS],
                attachment_count=found.attachment_counts.get(m.id, 0),
                deal_id=sid(found.deal_ids.get(m.thread_id)),
            )
        elif row.kind == "activity":
            a = found.activities[row.id]
            entry.activity = ActivityEntry(
                id=str(a.id),
                type=a.type,
                subject=a.subject,
                due_at=a.due_at,
                done=a.done,
                person_id=sid(a.person_id),
                organization_id=sid(a.organization_id),
                deal_id=sid(a.deal_id),
                lead_id=sid(a.lead_id),
                created_by=actor_out(a.created_by),
            )
        elif row.kind == "note":
            n = found.notes[row.id]
            entry.note = NoteEntry(
                id=str(n.id),
                content=n.content,
                person_id=sid(n.person_id),
                organization_id=sid(n.organization_id),
                deal_id=sid(n.deal_id),
                lead_id=sid(n.lead_id),
                created_by=actor_out(n.created_by),
            )
        else:
            e = found.events[row.id]
            entry.deal_event = DealEventEntry(
                id=str(e.id),
                deal_id=str(e.deal_id),
                deal_title=found.deal_titles.get(e.deal_id, ""),
                type=e.type,
                data=e.data,
                user_id=sid(e.user_id),
                actor=actor_out(e.actor),
            )
        entries.append(entry)
    return entries
