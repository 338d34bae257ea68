"""The recovery sweep: enqueue again every message accepted but not processed (Redis was down, a worker died),
and give up on the ones that were claimed `max_attempts` times without ever finishing."""

from __future__ import annotations

import uuid

import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared.broker import enqueue_many, inbound_groups
from shared.db import transaction

log = structlog.get_logger(__name__)

_SWEEP_LOCK = 7202611241
_MESSAGES_PER_ROUND_TRIP = 256
# Not claimed in the last moments, and not locked by a worker processing it (SKIP LOCKED): nobody is on it.
_UNCLAIMED = "(claimed_until IS NULL OR claimed_until < now())"
# Attempts are counted when a worker claims a row, and a failure that raises is recorded (ending `failed` on the
# last attempt). A row still `received`, out of attempts and no longer claimed was therefore never finished: its
# worker died (killed, out of memory, crashed) or ran out of time every time. Re-enqueueing it would loop forever.
_GIVE_UP = text(
    "UPDATE inbound_messages SET status = 'failed', claimed_until = NULL,"
    " last_error = 'the worker died ' || attempts || ' times processing it (killed, out of memory, crashed or"
    " past its time limit)'"
    " WHERE id IN (SELECT id FROM inbound_messages"
    f" WHERE status = 'received' AND attempts >= :max_attempts AND {_UNCLAIMED} FOR UPDATE SKIP LOCKED)"
    " RETURNING id, attempts"
)
# Waiting longer than the grace period (its queue message may be lost), or claimed by a worker that died with it:
# a claim is ended when an attempt fails or finishes, so one that lapsed without either is an orphan, due now
# rather than when the grace period of its arrival is over (minutes after a crash that took its worker).
_WAITING = text(
    "SELECT id FROM inbound_messages WHERE status = 'received'"
    " AND (received_at < now() - make_interval(secs => :grace) OR claimed_until < now())"
    f" AND {_UNCLAIMED} ORDER BY received_at LIMIT :limit FOR UPDATE SKIP LOCKED"
)


def sweep(
    sessions: sessionmaker[Session],
    broker: RedisBroker,
    *,
    grace_seconds: float,
    max_attempts: int,
    limit: int = 50_000,
    ids_per_message: int = 1,
) -> int:
    """Enqueue what waited longer than the grace period; returns how many. One sweeper at a time."""
    with transaction(sessions) as session:
        if not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _SWEEP_LOCK}).scalar():
            return 0
        for row in session.execute(_GIVE_UP, {"max_attempts": max_attempts}).all():
            log.error("sweep.gave_up_on_poison_message", inbound_id=str(row.id), attempts=row.attempts)
        waiting: list[uuid.UUID] = list(session.scalars(_WAITING, {"grace": grace_seconds, "limit": limit}).all())
    sent = 0
    messages = inbound_groups(waiting, ids_per_message)
    try:
        for start in range(0, len(messages), _MESSAGES_PER_ROUND_TRIP):
            chunk = messages[start : start + _MESSAGES_PER_ROUND_TRIP]
            enqueue_many(broker, chunk)
            sent += sum(len(message.args) for message in chunk)
    except redis.RedisError as exc:
        log.warning("sweep.redis_unavailable", enqueued=sent, waiting=len(waiting), error=str(exc))
    if sent:
        log.info("sweep.enqueued", count=sent)
    return sent
