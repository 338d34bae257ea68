"""The recovery sweep: enqueue again every message accepted but not processed (Redis was down, a worker died)."""

from __future__ import annotations

import uuid

import redis
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared.broker import inbound_received
from shared.db import transaction

log = structlog.get_logger(__name__)

_SWEEP_LOCK = 7202611241
_WAITING = text(
    "SELECT id FROM inbound_messages WHERE status = 'received'"
    " AND received_at < now() - make_interval(secs => :grace) ORDER BY received_at LIMIT :limit"
)


def sweep(sessions: sessionmaker[Session], broker: RedisBroker, *, grace_seconds: float, limit: int = 50_000) -> int:
    """Enqueue what waited longer than the grace period; returns how many. One sweeper at a time."""
    with transaction(sessions) as session:
        if not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _SWEEP_LOCK}).scalar():
            return 0
        waiting: list[uuid.UUID] = list(session.scalars(_WAITING, {"grace": grace_seconds, "limit": limit}).all())
    sent = 0
    try:
        for inbound_id in waiting:
            broker.enqueue(inbound_received(inbound_id))
            sent += 1
    except redis.RedisError as exc:
        log.warning("sweep.redis_unavailable", enqueued=sent, waiting=len(waiting), error=str(exc))
    if waiting:
        log.info("sweep.enqueued", count=sent)
    return sent
