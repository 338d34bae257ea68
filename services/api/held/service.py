"""Held and failed mail: list with reasons, reprocess (after fixing the cause), discard.

Reprocessing puts the message back to `received` and enqueues it after the commit; if Redis is down the
recovery sweep picks it up, as for any received message. Discarding keeps the row and its raw bytes with status
`discarded`: users expect "discard" to hide mail from the CRM, not to destroy evidence of what arrived.
"""

from __future__ import annotations

import uuid
from email import policy
from email.parser import BytesHeaderParser

from sqlalchemy import ColumnElement, Row, func, select, update
from sqlalchemy.orm import Session

from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import conflict, not_found
from shared.broker import inbound_received
from shared.events import enqueue_after_commit
from shared.models import InboundMessage, InboundStatus

WAITING_FOR_A_HUMAN = (InboundStatus.held, InboundStatus.failed)
_HEADER_BYTES = 16_384  # enough for any sane header block; the body (up to the size limit) stays in Postgres

_COLUMNS = (
    InboundMessage.id,
    InboundMessage.status,
    InboundMessage.hold_reason,
    InboundMessage.last_error,
    InboundMessage.attempts,
    InboundMessage.user_id,
    InboundMessage.envelope_from,
    InboundMessage.envelope_to,
    InboundMessage.received_at,
    InboundMessage.size,
    InboundMessage.auth_summary,
    InboundMessage.auth_results,
    func.substring(InboundMessage.raw, 1, _HEADER_BYTES).label("head"),
)


def _scoped(caller: Caller) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [InboundMessage.account_id == caller.account_id]
    if caller.user_id is not None:
        # A user's token sees the user's own held mail only: it may be private correspondence.
        conditions.append(InboundMessage.user_id == caller.user_id)
    return conditions


def list_held(
    session: Session, caller: Caller, status: str | None, user_id: uuid.UUID | None, cursor: str | None, limit: int
) -> tuple[list[Row[tuple[object, ...]]], str | None]:
    query = select(*_COLUMNS).where(*_scoped(caller))
    query = query.where(InboundMessage.status.in_([status] if status else WAITING_FOR_A_HUMAN))
    if user_id is not None:
        query = query.where(InboundMessage.user_id == user_id)
    rows = session.execute(paginate(query, InboundMessage.received_at, InboundMessage.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda r: (r.received_at, r.id))


def get_held(session: Session, caller: Caller, inbound_id: uuid.UUID) -> Row[tuple[object, ...]]:
    row = session.execute(select(*_COLUMNS).where(*_scoped(caller), InboundMessage.id == inbound_id)).one_or_none()
    if row is None:
        raise not_found("Held message")
    return row


def headers(head: bytes) -> tuple[str | None, str | None]:
    """Subject and From of a raw message head, or None where they cannot be read."""
    try:
        parsed = BytesHeaderParser(policy=policy.default).parsebytes(head)
        subject, sender = parsed.get("subject"), parsed.get("from")
        return (None if subject is None else str(subject)), (None if sender is None else str(sender))
    except Exception:
        # Header parsing of hostile mail can fail in many ways; the listing must still show the row.
        return None, None


def _lock(session: Session, caller: Caller, inbound_id: uuid.UUID) -> InboundMessage:
    inbound = session.scalars(
        select(InboundMessage).where(*_scoped(caller), InboundMessage.id == inbound_id).with_for_update()
    ).one_or_none()
    if inbound is None:
        raise not_found("Held message")
    if inbound.status not in WAITING_FOR_A_HUMAN:
        raise conflict(f"This message is {inbound.status}, not held or failed.")
    return inbound


def reprocess(session: Session, caller: Caller, inbound_id: uuid.UUID) -> None:
    inbound = _lock(session, caller, inbound_id)
    _requeue(inbound)
    enqueue_after_commit(session, inbound_received(inbound.id))


def reprocess_all(session: Session, caller: Caller, status: str | None, reason_contains: str | None) -> int:
    statement = (
        update(InboundMessage)
        .where(*_scoped(caller))
        .where(InboundMessage.status.in_([status] if status else WAITING_FOR_A_HUMAN))
    )
    if reason_contains:
        statement = statement.where(func.strpos(func.coalesce(InboundMessage.hold_reason, ""), reason_contains) > 0)
    ids = session.scalars(
        statement.values(status=InboundStatus.received, hold_reason=None, attempts=0, last_error=None)
        .returning(InboundMessage.id)
        .execution_options(synchronize_session=False)
    ).all()
    for inbound_id in ids:
        enqueue_after_commit(session, inbound_received(inbound_id))
    return len(ids)


def discard(session: Session, caller: Caller, inbound_id: uuid.UUID) -> None:
    inbound = _lock(session, caller, inbound_id)
    inbound.status = InboundStatus.discarded


def _requeue(inbound: InboundMessage) -> None:
    inbound.status = InboundStatus.received
    inbound.hold_reason = None
    inbound.attempts = 0
    inbound.last_error = None
