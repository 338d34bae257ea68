"""Sending approved drafts: the `draft.send` actor, and the sweep that finds every draft waiting for the relay.

The draft row is the truth. An attempt claims it with a lease, talks to the relay without a transaction open, then
records the outcome: sent (and a copy handed to the matcher), a retry at an exponentially later time, or `failed`
with the relay's reason. A lost queue message or a dead worker only delays a draft until the next sweep.

Exactly-once delivery over SMTP does not exist: a worker that dies after the relay said `250` but before the
outcome is recorded sends again once its lease ends. Every attempt carries the same Message-ID, so recipients'
clients and Mailroom itself see one message.
"""

from __future__ import annotations

import email.policy
import functools
import smtplib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.authentication import SenderAuthentication, SpfCheck
from shared import outbound
from shared.broker import ActorName, Queue, draft_send, inbound_received
from shared.db import transaction
from shared.directory import bcc_address
from shared.events import emit_draft_status, enqueue_after_commit
from shared.models import Draft, DraftStatus, InboundMessage, InboundStatus, User
from shared.outbound import OutboundError, OutboundNotConfiguredError
from shared.settings import Settings

log = structlog.get_logger(__name__)

Relay = Callable[[EmailMessage], None]

_CLAIM = text(
    "UPDATE drafts SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => :lease)"
    " WHERE id = :id AND status = 'approved' AND next_attempt_at <= now() RETURNING attempts"
)
_DUE = text(
    "SELECT id FROM drafts WHERE status = 'approved'"
    " AND next_attempt_at <= now() - make_interval(secs => :grace) ORDER BY next_attempt_at LIMIT :limit"
)


@dataclass(frozen=True)
class DraftPolicy:
    max_attempts: int
    backoff_seconds: float
    max_backoff_seconds: float
    lease_seconds: float
    bcc_domain: str

    @classmethod
    def of(cls, settings: Settings) -> DraftPolicy:
        return cls(
            max_attempts=settings.draft_send_max_attempts,
            backoff_seconds=settings.draft_send_backoff_seconds,
            max_backoff_seconds=settings.draft_send_max_backoff_seconds,
            lease_seconds=settings.draft_send_lease_seconds,
            bcc_domain=settings.bcc_domain,
        )

    def backoff(self, attempts: int) -> float:
        return float(min(self.backoff_seconds * 2 ** (attempts - 1), self.max_backoff_seconds))


@dataclass(frozen=True)
class Failure:
    reason: str
    permanent: bool  # the relay refused it for good (5xx): retrying the same message cannot help


def build_message(draft: Draft, user: User, *, date: datetime) -> EmailMessage:
    """The reply as it leaves: the draft's fixed Message-ID, and In-Reply-To/References that thread it."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = formataddr((user.name or "", user.email))
    message["To"] = ", ".join(draft.to)
    if draft.cc:
        message["Cc"] = ", ".join(draft.cc)
    if draft.bcc:
        # The relay client takes envelope recipients from To, Cc and Bcc and never transmits Bcc itself.
        message["Bcc"] = ", ".join(draft.bcc)
    message["Subject"] = draft.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{draft.message_id_header}>"
    if draft.in_reply_to:
        message["In-Reply-To"] = f"<{draft.in_reply_to}>"
    if draft.references:
        message["References"] = " ".join(f"<{ref}>" for ref in draft.references)
    message.set_content(draft.body)
    return message


def classify_failure(exc: Exception) -> Failure:
    """Why an attempt failed, and whether trying again can help: a 5xx from the relay is its final word."""
    cause = exc.__cause__ if isinstance(exc, OutboundError) and exc.__cause__ is not None else exc
    reason = str(exc) if isinstance(exc, OutboundError) else f"{type(exc).__name__}: {exc}"
    if isinstance(cause, smtplib.SMTPRecipientsRefused):
        return Failure(reason[:2000], all(code >= 500 for code, _ in cause.recipients.values()))
    if isinstance(cause, smtplib.SMTPResponseException):
        return Failure(reason[:2000], cause.smtp_code >= 500)
    if isinstance(exc, OutboundError) and exc.__cause__ is None and not isinstance(exc, OutboundNotConfiguredError):
        # A relay URL that cannot be read, or a relay that took the message for only some recipients: sending
        # again would not help the first and would send the others a second copy.
        return Failure(reason[:2000], permanent=True)
    return Failure(reason[:2000], permanent=False)


def outbox_authentication(sender: str, draft_id: uuid.UUID) -> SenderAuthentication:
    """Sender authentication for the copy of a sent draft: Mailroom wrote it and the owner approved it, so it is
    the user's own mail without asking DNS (which would judge Mailroom's copy, not what the relay delivered)."""
    domain = sender.rsplit("@", 1)[-1].lower()
    return SenderAuthentication(
        from_domain=domain,
        spf=SpfCheck(result="none", domain=None),
        dkim=(),
        dmarc="pass",
        dmarc_policy=None,
        source=f"mailroom outbox (approved draft {draft_id})",
        header=f"mailroom; outbox=pass header.from={domain}",
        notes=("sent by Mailroom from an approved draft",),
    )


@dataclass
class DraftSender:
    sessions: sessionmaker[Session]
    broker: RedisBroker
    policy: DraftPolicy
    relay: Relay

    def send(self, draft_id: uuid.UUID) -> str:
        """One attempt, if the draft is due; returns what happened (for logs and tests)."""
        with transaction(self.sessions) as session:
            attempts = session.scalar(_CLAIM, {"id": draft_id, "lease": self.policy.lease_seconds})
            if attempts is None:
                return "not-due"  # sent, failed for good, not approved, or another attempt holds it
            draft = session.get_one(Draft, draft_id)
            user = session.get_one(User, draft.user_id)
            message = build_message(draft, user, date=datetime.now(UTC))
        failure: Failure | None = None
        try:
            self.relay(message)
        except Exception as exc:
            failure = classify_failure(exc)
        return self._record(draft_id, attempts, message, failure)

    def _record(self, draft_id: uuid.UUID, attempts: int, message: EmailMessage, failure: Failure | None) -> str:
        now = datetime.now(UTC)
        retry_in: float | None = None
        with transaction(self.sessions) as session:
            draft = session.get_one(Draft, draft_id, with_for_update=True)
            draft.attempt_log = [
                *draft.attempt_log,
                {"at": now.isoformat(), "error": None if failure is None else failure.reason},
            ]
            if failure is None:
                draft.status = DraftStatus.sent
                draft.sent_at = now
                draft.last_error = None
                draft.next_attempt_at = None
                draft.sent_inbound_id = self._store_sent_copy(session, draft, message)
                emit_draft_status(session, draft)
            else:
                draft.last_error = failure.reason
                if failure.permanent or attempts >= self.policy.max_attempts:
                    draft.status = DraftStatus.failed
                    draft.next_attempt_at = None
                    emit_draft_status(session, draft)
                else:
                    retry_in = self.policy.backoff(attempts)
                    draft.next_attempt_at = now + timedelta(seconds=retry_in)
            outcome = draft.status if retry_in is None else "retry"
        if retry_in is not None:
            try:
                self.broker.enqueue(draft_send(draft_id), delay=int(retry_in * 1000))
            except Exception as exc:
                log.warning("draft.retry_not_enqueued", error=type(exc).__name__)  # the sweep sends it when due
        log.info(
            "draft.attempt",
            draft_id=str(draft_id),
            attempt=attempts,
            outcome=outcome,
            error=None if failure is None else failure.reason,
        )
        return outcome

    def _store_sent_copy(self, session: Session, draft: Draft, message: EmailMessage) -> uuid.UUID:
        """Hand the sent message to the matcher like the user's own BCC copy: it threads it, and a real BCC copy
        arriving too (same Message-ID) is recognized as a duplicate, so the thread shows it once."""
        user = session.get_one(User, draft.user_id)
        del message["Bcc"]  # the copy is what the recipients got
        raw = message.as_bytes(policy=email.policy.SMTP)
        vouched = outbox_authentication(user.email, draft.id)
        inbound = InboundMessage(
            account_id=draft.account_id,
            user_id=draft.user_id,
            envelope_from=user.email,
            envelope_to=bcc_address(user, self.policy.bcc_domain),
            peer=None,
            raw=raw,
            size=len(raw),
            status=InboundStatus.received,
            attempts=0,
            auth_results=vouched.as_json(),
            auth_summary=vouched.summary,
        )
        session.add(inbound)
        session.flush()
        enqueue_after_commit(session, inbound_received(inbound.id))
        return inbound.id

    def sweep(self, *, grace_seconds: float, limit: int = 10_000) -> int:
        """Enqueue every approved draft that is due (and was not picked up within the grace period)."""
        with transaction(self.sessions) as session:
            due: list[uuid.UUID] = list(session.scalars(_DUE, {"grace": grace_seconds, "limit": limit}).all())
        for draft_id in due:
            self.broker.enqueue(draft_send(draft_id))
        if due:
            log.info("draft.sweep_enqueued", count=len(due))
        return len(due)

    def sweep_safely(self, *, grace_seconds: float) -> None:
        try:
            self.sweep(grace_seconds=grace_seconds)
        except Exception:
            log.exception("draft.sweep_failed")


def register_draft_sender(
    broker: RedisBroker, sessions: sessionmaker[Session], settings: Settings, relay: Relay | None = None
) -> DraftSender:
    """The `draft.send` actor, sending through `relay` (default: MAILROOM_SMTP_RELAY_URL)."""
    sender = DraftSender(
        sessions=sessions,
        broker=broker,
        policy=DraftPolicy.of(settings),
        relay=relay or functools.partial(outbound.send, settings),
    )

    def send(draft_id: str) -> None:
        with structlog.contextvars.bound_contextvars(draft_id=draft_id):
            sender.send(uuid.UUID(draft_id))

    dramatiq.actor(
        broker=broker,
        actor_name=ActorName.draft_send.value,
        queue_name=Queue.outbox.value,
        # Retries are scheduled on the row (with their own backoff and bound), not by dramatiq; a crash leaves the
        # draft claimed until its lease ends and the sweep picks it up again.
        max_retries=0,
        time_limit=int(settings.draft_send_lease_seconds * 1000),
    )(send)
    return sender
