"""Held and failed mail: what the matcher kept without placing it, and why; reprocess or discard it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response, status

from services.api.common import Page
from services.api.deps import Caller, CurrentCaller, DbSession, filter_id, parse_id
from services.api.held import service
from services.api.held.schemas import HeldOut, ReprocessAll, Reprocessed
from services.api.mailbox.schemas import SenderAuthenticationOut
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit

router = APIRouter(prefix="/v1/held-messages", tags=["held mail"])


@router.get("", response_model=Page[HeldOut], response_model_by_alias=True)
def list_held(
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    status: Literal["held", "failed"] | None = None,
    user_id: str | None = None,
) -> Page[HeldOut]:
    """Held (the matcher would not place it) and failed (processing gave up) mail, newest first."""
    rows, next_cursor = service.list_held(session, caller, status, filter_id(user_id), cursor, limit)
    return Page[HeldOut](data=[_out(r, caller) for r in rows], next_cursor=next_cursor)


@router.post("/reprocess", response_model=Reprocessed)
def reprocess_all(body: ReprocessAll, caller: CurrentCaller, session: DbSession) -> Reprocessed:
    """Queue every held/failed message (optionally narrowed) for processing again, e.g. after verifying an alias."""
    return Reprocessed(count=service.reprocess_all(session, caller, body.status, body.reason_contains))


@router.get("/{inbound_id}", response_model=HeldOut, response_model_by_alias=True)
def get_held(inbound_id: str, caller: CurrentCaller, session: DbSession) -> HeldOut:
    return _out(service.get_held(session, caller, parse_id(inbound_id, "Held message")), caller)


@router.post(
    "/{inbound_id}/reprocess",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={202: {"description": "Queued; it leaves this list once processed (or comes back with a reason)."}},
)
def reprocess(inbound_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    service.reprocess(session, caller, parse_id(inbound_id, "Held message"))
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post("/{inbound_id}/discard", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def discard(inbound_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Keep it out of the CRM. The raw message is kept (status `discarded`) for audit; it never comes back."""
    service.discard(session, caller, parse_id(inbound_id, "Held message"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _out(row: Any, caller: Caller) -> HeldOut:
    subject, sender = service.headers(bytes(row.head or b""))
    return HeldOut(
        id=str(row.id),
        status=row.status,
        hold_reason=row.hold_reason,
        last_error=row.last_error,
        attempts=row.attempts,
        user_id=str(row.user_id),
        envelope_from=row.envelope_from,
        envelope_to=row.envelope_to if caller.sees_bcc_address_of(row.user_id) else None,
        received_at=row.received_at,
        size=row.size,
        subject=subject,
        sender=sender,
        authentication=SenderAuthenticationOut.of(row.auth_summary, row.auth_results),
    )
