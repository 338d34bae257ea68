"""After the commit, the gateway hands ids to the matcher's queue: close together, several in one queue message."""

from __future__ import annotations

import asyncio
import json
import uuid

import redis

from services.smtp_gateway.enqueue import AfterCommitEnqueuer
from shared.broker import Queue, make_broker
from tests.conftest import Infra


def _queued_groups(infra: Infra, namespace: str) -> list[list[str]]:
    """The id groups of the inbound queue's messages, as the matcher's consumers will receive them."""
    client = redis.Redis.from_url(infra.redis_url)
    try:
        queue = f"{namespace}:{Queue.inbound.value}"
        message_ids = [message_id.decode() for message_id in client.lrange(queue, 0, -1)]
        encoded = client.hmget(f"{queue}.msgs", message_ids) if message_ids else []
        return sorted((json.loads(raw)["args"] for raw in encoded if raw), key=len)
    finally:
        client.close()


def test_ids_committed_close_together_travel_in_one_queue_message_up_to_a_batch(infra: Infra) -> None:
    namespace = f"{infra.namespace}-enqueue-{uuid.uuid4().hex[:8]}"
    broker = make_broker(infra.redis_url, namespace)
    committed = [uuid.uuid4() for _ in range(5)]

    async def commit_one_by_one() -> None:
        enqueuer = AfterCommitEnqueuer(broker, ids_per_message=3, linger_seconds=0.2)
        for inbound_id in committed:  # as separate commits a few milliseconds apart would submit them
            enqueuer.submit([inbound_id])
            await asyncio.sleep(0.005)
        await enqueuer.drain(seconds=10)
        await enqueuer.close()

    try:
        asyncio.run(commit_one_by_one())
        groups = _queued_groups(infra, namespace)
    finally:
        broker.close()

    assert sorted(len(group) for group in groups) == [2, 3]
    assert sorted(inbound_id for group in groups for inbound_id in group) == sorted(map(str, committed))
