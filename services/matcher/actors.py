"""The matcher's dramatiq actors. Each is safe to run twice; exhausted messages land in the database."""

from __future__ import annotations

import uuid

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.time_limit import TimeLimitExceeded
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.pipeline import Matcher
from shared import metrics
from shared.broker import ActorName, Queue
from shared.db import transaction
from shared.settings import Settings

log = structlog.get_logger(__name__)

_RECORD_FAILURE = text(
    "UPDATE inbound_messages SET attempts = attempts + 1, last_error = :error,"
    " status = CASE WHEN attempts + 1 >= :max_attempts THEN 'failed' ELSE status END"
    " WHERE id = :id AND status = 'received' RETURNING attempts, status"
)


def register_actors(broker: RedisBroker, matcher: Matcher, settings: Settings) -> None:
    max_attempts = settings.process_max_attempts

    def inbound_received(inbound_id: str) -> None:
        handle_inbound_received(matcher, inbound_id, max_attempts)

    dramatiq.actor(
        broker=broker,
        actor_name=ActorName.inbound_received.value,
        queue_name=Queue.inbound.value,
        # One more than our own bound, so the database status (not Redis' dead-letter set) is where it ends.
        max_retries=max_attempts,
        min_backoff=500,
        max_backoff=60_000,
        time_limit=int(settings.process_time_limit_seconds * 1000),
    )(inbound_received)


def handle_inbound_received(matcher: Matcher, inbound_id: str, max_attempts: int) -> None:
    """Process one inbound message; a failure is counted on its row, and raised for a retry until the last one."""
    with structlog.contextvars.bound_contextvars(inbound_id=inbound_id):
        try:
            matcher.process(uuid.UUID(inbound_id))
        except (Exception, TimeLimitExceeded) as exc:
            if _record_failure(matcher.sessions, inbound_id, exc, max_attempts):
                return
            raise


def _record_failure(sessions: sessionmaker[Session], inbound_id: str, exc: BaseException, max_attempts: int) -> bool:
    """Count the failed attempt; True when the message is now `failed` for good (and must not be retried)."""
    reason = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        with transaction(sessions) as session:
            row = session.execute(
                _RECORD_FAILURE, {"error": reason, "max_attempts": max_attempts, "id": inbound_id}
            ).one_or_none()
    except Exception:
        log.exception("matcher.failure_not_recorded")
        return False
    if row is None:
        return True  # someone else finished it meanwhile
    metrics.processing_failed(for_good=row.status == "failed")
    if row.status == "failed":
        log.error("matcher.gave_up", attempts=row.attempts, reason=reason)
        return True
    log.warning("matcher.attempt_failed", attempts=row.attempts, reason=reason)
    return False
