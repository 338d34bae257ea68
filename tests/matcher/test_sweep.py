"""The recovery sweep: what waited too long, and what a dead worker held, goes back on the queue."""

from __future__ import annotations

import json
import uuid

import redis
from sqlalchemy import text

from services.matcher.sweep import sweep
from shared.broker import Queue, make_broker
from shared.db import make_engine, make_session_factory, transaction
from tests.conftest import Infra, new_tenant
from tests.matcher.conftest import receive
from tests.support.stack import make_mail


def _queued_ids(infra: Infra, namespace: str) -> set[str]:
    client = redis.Redis.from_url(infra.redis_url)
    try:
        queue = f"{namespace}:{Queue.inbound.value}"
        message_ids = [message_id.decode() for message_id in client.lrange(queue, 0, -1)]
        encoded = client.hmget(f"{queue}.msgs", message_ids) if message_ids else []
        return {inbound_id for raw in encoded if raw for inbound_id in json.loads(raw)["args"]}
    finally:
        client.close()


def test_mail_whose_worker_died_holding_it_is_due_once_its_claim_lapses(infra: Infra, scratch_database: str) -> None:
    # A database of its own: the shared stack's worker must not sweep these rows first.
    engine = make_engine(scratch_database)
    sessions = make_session_factory(engine)
    tenant = new_tenant(sessions)
    orphan, still_claimed, _just_arrived, long_waiting = (
        receive(sessions, tenant, make_mail(sender=tenant.user_email, to=["kim@client.example"], subject=subject))
        for subject in ("orphan", "claimed", "new", "old")
    )
    with transaction(sessions) as session:
        # Claimed by a worker killed before it finished: the claim lapsed a moment ago, the mail arrived just now.
        session.execute(
            text("UPDATE inbound_messages SET attempts = 1, claimed_until = now() - interval '1 second' WHERE id = :i"),
            {"i": orphan},
        )
        # Claimed by a live worker a moment ago: its claim still holds.
        session.execute(
            text(
                "UPDATE inbound_messages SET attempts = 1, claimed_until = now() + interval '9 seconds' WHERE id = :i"
            ),
            {"i": still_claimed},
        )
        session.execute(
            text("UPDATE inbound_messages SET received_at = now() - interval '5 minutes' WHERE id = :i"),
            {"i": long_waiting},
        )
    namespace = f"{infra.namespace}-sweep-{uuid.uuid4().hex[:8]}"
    broker = make_broker(infra.redis_url, namespace)
    try:
        assert sweep(sessions, broker, grace_seconds=120, max_attempts=5, ids_per_message=16) == 2
        queued = _queued_ids(infra, namespace)
    finally:
        broker.close()
        engine.dispose()
    # Mail that only just arrived has its own queue message on the way (the grace period is for that), and a live
    # claim is its worker's.
    assert queued == {str(orphan), str(long_waiting)}
