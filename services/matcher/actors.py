"""The matcher's dramatiq actors. Each is safe to run twice; exhausted messages land in the database."""

from __future__ import annotations

import uuid

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker

from services.matcher.pipeline import Matcher
from shared.broker import ActorName, Queue
from shared.settings import Settings

log = structlog.get_logger(__name__)


def register_actors(broker: RedisBroker, matcher: Matcher, settings: Settings) -> None:
    # Several ids per queue message (see shared.broker); a queue message from before that carries one.
    def inbound_received(*inbound_ids: str) -> None:
        handle_inbound_received(matcher, *inbound_ids)

    dramatiq.actor(
        broker=broker,
        actor_name=ActorName.inbound_received.value,
        queue_name=Queue.inbound.value,
        # One more than our own bound, so the database status (not Redis' dead-letter set) is where it ends.
        max_retries=settings.process_max_attempts,
        min_backoff=500,
        max_backoff=60_000,
        time_limit=int(settings.process_time_limit_seconds * 1000),
    )(inbound_received)


def handle_inbound_received(matcher: Matcher, *inbound_ids: str) -> None:
    """Process these messages, a batch at a time. Every attempt is counted on its row when it is claimed; a failure
    raises (for dramatiq's retry with backoff) until the last attempt, which ends `failed`.

    After a time limit or a dead worker the row is unlocked and, once its short claim window is over, due again,
    alone: the sweep brings it back, or marks it failed once it is out of attempts."""
    with structlog.contextvars.bound_contextvars(inbound_ids=list(inbound_ids)):
        matcher.process_due([uuid.UUID(inbound_id) for inbound_id in inbound_ids])
