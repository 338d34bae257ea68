"""Drafts that wait for approval, and their sending."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from services.api.common import Page, sid
from services.api.deps import CurrentCaller, DbSession, filter_id, parse_id
from services.api.drafts import service
from services.api.drafts.schemas import AttemptOut, DraftIn, DraftOut, DraftPatch, Rejection
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from shared.models import Draft, DraftStatus

router = APIRouter(prefix="/v1/drafts", tags=["drafts"])


@router.get("", response_model=Page[DraftOut])
def list_drafts(
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    thread_id: str | None = None,
    user_id: Annotated[str | None, Query(description="Drafts sent as (and approved by) this user.")] = None,
    status: DraftStatus | None = None,
) -> Page[DraftOut]:
    """Newest first. `status=pending_approval&user_id=…` is a user's approval queue."""
    filters = service.DraftFilters(thread_id=filter_id(thread_id), user_id=filter_id(user_id), status=status)
    rows, next_cursor = service.list_drafts(session, caller, filters, cursor, limit)
    return Page[DraftOut](data=[_out(d) for d in rows], next_cursor=next_cursor)


@router.post("", response_model=DraftOut, status_code=status.HTTP_201_CREATED)
def create_draft(body: DraftIn, caller: CurrentCaller, session: DbSession) -> DraftOut:
    """A reply in a thread: `In-Reply-To` and `References` follow the thread's last message."""
    return _out(service.create_draft(session, caller, body))


@router.get("/{draft_id}", response_model=DraftOut)
def get_draft(draft_id: str, caller: CurrentCaller, session: DbSession) -> DraftOut:
    return _out(service.get_draft(session, caller, parse_id(draft_id, "Draft")))


@router.patch("/{draft_id}", response_model=DraftOut)
def update_draft(draft_id: str, body: DraftPatch, caller: CurrentCaller, session: DbSession) -> DraftOut:
    """Only while `draft` or `rejected` (a rejected draft becomes a draft again)."""
    return _out(service.update_draft(session, caller, parse_id(draft_id, "Draft"), body))


@router.delete("/{draft_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_draft(draft_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Drafts not yet approved can be deleted; approved and sent ones are kept."""
    service.delete_draft(session, caller, parse_id(draft_id, "Draft"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{draft_id}/submit", response_model=DraftOut)
def submit_draft(draft_id: str, caller: CurrentCaller, session: DbSession) -> DraftOut:
    """Ask the owner to approve it (`pending_approval`). Sent at once (`approved`) when the owner submits it or
    the account does not ask before sending."""
    return _out(service.submit_draft(session, caller, parse_id(draft_id, "Draft")))


@router.post("/{draft_id}/approve", response_model=DraftOut)
def approve_draft(draft_id: str, caller: CurrentCaller, session: DbSession) -> DraftOut:
    """The owner (a token tied to the draft's user) or an admin token: send it."""
    return _out(service.approve_draft(session, caller, parse_id(draft_id, "Draft")))


@router.post("/{draft_id}/reject", response_model=DraftOut)
def reject_draft(
    draft_id: str, caller: CurrentCaller, session: DbSession, body: Annotated[Rejection | None, Body()] = None
) -> DraftOut:
    """The owner or an admin token: do not send it; the author can edit and submit again."""
    reason = None if body is None else body.reason
    return _out(service.reject_draft(session, caller, parse_id(draft_id, "Draft"), reason))


@router.post("/{draft_id}/retry", response_model=DraftOut)
def retry_draft(draft_id: str, caller: CurrentCaller, session: DbSession) -> DraftOut:
    """Send a `failed` draft again, with a fresh round of attempts."""
    return _out(service.retry_draft(session, caller, parse_id(draft_id, "Draft")))


def _out(draft: Draft) -> DraftOut:
    return DraftOut(
        id=str(draft.id),
        thread_id=str(draft.thread_id),
        user_id=str(draft.user_id),
        author_user_id=sid(draft.author_user_id),
        to=list(draft.to),
        cc=list(draft.cc),
        bcc=list(draft.bcc),
        subject=draft.subject,
        body=draft.body,
        in_reply_to=draft.in_reply_to,
        references=list(draft.references),
        message_id=draft.message_id_header,
        status=draft.status,
        submitted_at=draft.submitted_at,
        decided_at=draft.decided_at,
        decided_by_user_id=sid(draft.decided_by_user_id),
        rejection_reason=draft.rejection_reason,
        attempts=draft.attempts,
        next_attempt_at=draft.next_attempt_at,
        last_error=draft.last_error,
        attempt_log=[AttemptOut.model_validate(entry) for entry in draft.attempt_log],
        sent_at=draft.sent_at,
        created_at=draft.created_at,
        updated_at=draft.updated_at,
    )
