"""Webhook events through a transactional outbox.

`emit()` writes one delivery row per matching subscription inside the caller's transaction, so an event is sent
if and only if the change that caused it was committed (Polar's `JobQueueManager` idea, with Postgres as the queue
of record). The rows are sent by the `webhook.deliver` actor (services/matcher/webhooks.py). Two things enqueue
them: best effort, an after-commit hook on the session factory (`install_after_commit_enqueue`), so events leave
within milliseconds; authoritatively, the worker's periodic webhook sweep, which finds every due row whatever
happened to Redis or to the process in between.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from pydantic import BaseModel, Field
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker

from shared.broker import webhook_deliver
from shared.db import DirectSql, execute_direct
from shared.models import (
    CreatedFrom,
    Draft,
    DraftStatus,
    MessageKind,
    PersonRule,
    ThreadDealRule,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEvent,
)
from shared.settings import Settings

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "Mailroom-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 -- a prefix that lets secret scanners spot leaked signing secrets
_AFTER_COMMIT = "mailroom.after_commit"
_SUBSCRIPTIONS = "mailroom.webhook_subscriptions"


class WebhookPayload(BaseModel):
    """The `data` of one event. Every producer (matcher, API) builds the same model, so an event has one shape."""

    event: ClassVar[WebhookEvent]


class MessageStored(WebhookPayload):
    event: ClassVar[WebhookEvent] = WebhookEvent.message_stored
    message_id: uuid.UUID
    thread_id: uuid.UUID
    kind: MessageKind
    deal_id: uuid.UUID | None


class PersonCreated(WebhookPayload):
    event: ClassVar[WebhookEvent] = WebhookEvent.person_created
    person_id: uuid.UUID
    addresses: list[str]
    created_from: CreatedFrom
    created_by_rule: PersonRule | None = None  # why the matcher created it
    created_by_message_id: uuid.UUID | None = None


class ThreadLinked(WebhookPayload):
    event: ClassVar[WebhookEvent] = WebhookEvent.thread_linked
    thread_id: uuid.UUID
    deal_id: uuid.UUID | None
    previous_deal_id: uuid.UUID | None
    deal_rule: ThreadDealRule | None
    linked_by_message_id: uuid.UUID | None = None  # a message linked it (sub-address, single open deal)
    user_id: uuid.UUID | None = None  # a user linked it (their choice)


class DisambiguationCreated(WebhookPayload):
    event: ClassVar[WebhookEvent] = WebhookEvent.disambiguation_created
    disambiguation_id: uuid.UUID
    thread_id: uuid.UUID


class MessageHeld(WebhookPayload):
    event: ClassVar[WebhookEvent] = WebhookEvent.message_held
    inbound_id: uuid.UUID
    user_id: uuid.UUID
    reason: str


class DraftChanged(WebhookPayload):
    """A draft reached the status its event names. One shape for all of them; `reason` is the owner's reason for a
    rejection, or the relay's last error for a failure."""

    draft_id: uuid.UUID
    thread_id: uuid.UUID
    status: DraftStatus
    user_id: uuid.UUID  # sent as this user, who approves it
    author_user_id: uuid.UUID | None
    decided_by_user_id: uuid.UUID | None
    reason: str | None = None

    @staticmethod
    def of(draft: Draft) -> DraftChanged:
        reasons = {DraftStatus.rejected: draft.rejection_reason, DraftStatus.failed: draft.last_error}
        return _DRAFT_EVENTS[draft.status](
            draft_id=draft.id,
            thread_id=draft.thread_id,
            status=draft.status,
            user_id=draft.user_id,
            author_user_id=draft.author_user_id,
            decided_by_user_id=draft.decided_by_user_id,
            reason=reasons.get(draft.status),
        )


class DraftPendingApproval(DraftChanged):
    event: ClassVar[WebhookEvent] = WebhookEvent.draft_pending_approval


class DraftApproved(DraftChanged):
    event: ClassVar[WebhookEvent] = WebhookEvent.draft_approved


class DraftRejected(DraftChanged):
    event: ClassVar[WebhookEvent] = WebhookEvent.draft_rejected


class DraftSent(DraftChanged):
    event: ClassVar[WebhookEvent] = WebhookEvent.draft_sent


class DraftFailed(DraftChanged):
    event: ClassVar[WebhookEvent] = WebhookEvent.draft_failed


_DRAFT_EVENTS: dict[DraftStatus, type[DraftChanged]] = {
    DraftStatus.pending_approval: DraftPendingApproval,
    DraftStatus.approved: DraftApproved,
    DraftStatus.rejected: DraftRejected,
    DraftStatus.sent: DraftSent,
    DraftStatus.failed: DraftFailed,
}


def emit_draft_status(session: Session, draft: Draft) -> None:
    """The event of the status the draft has just reached (none for `draft`: editing is the author's own)."""
    if draft.status in _DRAFT_EVENTS:
        emit(session, draft.account_id, DraftChanged.of(draft))


class WebhookSettings(BaseModel):
    """Delivery policy: the `webhook_*` fields of `Settings` (`MAILROOM_WEBHOOK_*`)."""

    allow_private_targets: bool = False
    max_attempts: int = Field(default=8, ge=1, le=30)
    backoff_seconds: float = Field(default=30.0, gt=0)
    max_backoff_seconds: float = Field(default=6 * 3600.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)

    @classmethod
    def of(cls, settings: Settings) -> WebhookSettings:
        return cls(
            allow_private_targets=settings.webhook_allow_private_targets,
            max_attempts=settings.webhook_max_attempts,
            backoff_seconds=settings.webhook_backoff_seconds,
            max_backoff_seconds=settings.webhook_max_backoff_seconds,
            timeout_seconds=settings.webhook_timeout_seconds,
            lease_seconds=settings.webhook_lease_seconds,
        )


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>` (Stripe's scheme)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def emit(session: Session, account_id: uuid.UUID, payload: WebhookPayload) -> None:
    """Record the payload's event for every active subscription of the account that wants it, in the caller's
    transaction. `payload` becomes the envelope's `data` (as JSON: UUIDs and datetimes as strings)."""
    event = payload.event
    subscription_ids = [
        subscription_id for subscription_id, events in _active_subscriptions(session, account_id) if event in events
    ]
    if not subscription_ids:
        return
    event_id = uuid.uuid4()
    envelope = {
        "id": str(event_id),
        "type": event,
        "created_at": datetime.now(UTC).isoformat(),
        "account_id": str(account_id),
        "data": payload.model_dump(mode="json"),
    }
    for subscription_id in subscription_ids:
        delivery_id = uuid.uuid4()
        session.add(
            WebhookDelivery(
                id=delivery_id,
                account_id=account_id,
                subscription_id=subscription_id,
                event=event,
                event_id=event_id,
                payload=envelope,
                status=WebhookDeliveryStatus.pending,
                attempts=0,
            )
        )
        enqueue_after_commit(session, webhook_deliver(delivery_id))


# Fixed text: the matcher runs it for every batch, and building an ORM select cost more than running it.
_ACTIVE_SUBSCRIPTIONS = DirectSql(
    "SELECT id, events FROM webhook_subscriptions WHERE account_id = :account_id AND active IS TRUE"
)


def _active_subscriptions(session: Session, account_id: uuid.UUID) -> list[tuple[uuid.UUID, list[str]]]:
    """The account's active subscriptions, read once per session: the matcher emits several events per message."""
    cache: dict[uuid.UUID, list[tuple[uuid.UUID, list[str]]]] = session.info.setdefault(_SUBSCRIPTIONS, {})
    if account_id not in cache:
        rows = execute_direct(session, _ACTIVE_SUBSCRIPTIONS, {"account_id": account_id})
        cache[account_id] = [(row.id, list(row.events)) for row in rows]
    return cache[account_id]


def enqueue_after_commit(session: Session, message: dramatiq.Message[Any]) -> None:
    """Send `message` once the session's transaction commits; forget it if it rolls back."""
    session.info.setdefault(_AFTER_COMMIT, []).append(message)


def enqueued_after_commit(session: Session) -> int:
    """A mark of what is queued so far, for `forget_enqueued_since` when a savepoint is rolled back."""
    return len(session.info.get(_AFTER_COMMIT, []))


def forget_enqueued_since(session: Session, mark: int) -> None:
    """Drop the messages queued after `mark`: the savepoint that wrote their rows was rolled back (a dry run)."""
    del session.info.get(_AFTER_COMMIT, [])[mark:]


def install_after_commit_enqueue(factory: sessionmaker[Session], broker: RedisBroker) -> None:
    """Make every session of `factory` send what `enqueue_after_commit` collected, after its commit."""

    def send(session: Session) -> None:
        session.info.pop(_SUBSCRIPTIONS, None)
        messages: list[dramatiq.Message[Any]] = session.info.pop(_AFTER_COMMIT, [])
        for message in messages:
            try:
                broker.enqueue(message)
            except Exception as exc:
                # The commit already happened and must not be reported as failed; the sweeps re-enqueue.
                log.warning("events.enqueue_failed", actor=message.actor_name, error=type(exc).__name__)
                return

    def forget(session: Session) -> None:
        session.info.pop(_SUBSCRIPTIONS, None)
        session.info.pop(_AFTER_COMMIT, None)

    sa_event.listen(factory, "after_commit", send)
    sa_event.listen(factory, "after_rollback", forget)
