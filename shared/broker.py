"""The dramatiq broker on Redis, and the names of what travels through it.

Queue messages carry ids, never mail: the gateway enqueues inbound ids (the ones it committed together, up to a
matcher batch, in one queue message), the matcher loads the rest from Postgres.
The gateway builds messages by name, so it does not import (or even need) the matcher's code.
"""

from __future__ import annotations

import enum
import uuid

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis


class Queue(enum.StrEnum):
    inbound = "inbound"
    # Separate from inbound mail: a slow webhook receiver must never delay matching.
    webhooks = "webhooks"
    # Approved drafts on their way to the SMTP relay: a slow relay must not delay matching or webhooks.
    outbox = "outbox"
    # Work the clock starts (the next deal of a recurring series).
    scheduled = "scheduled"


class ActorName(enum.StrEnum):
    inbound_received = "inbound.received"
    webhook_deliver = "webhook.deliver"
    draft_send = "draft.send"
    deal_recur = "deal.recur"


def make_broker(redis_url: str, namespace: str) -> RedisBroker:
    # Bounded socket waits: a hung Redis must not hang the gateway's enqueuer or a worker forever.
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=redis_url, namespace=namespace, socket_timeout=10, socket_connect_timeout=5
    )
    for queue in Queue:
        broker.declare_queue(queue.value)
    return broker


def inbound_received(*inbound_ids: uuid.UUID) -> dramatiq.Message[None]:
    """One queue message for a group of inbound messages, which the matcher places as one batch: each queue
    message costs the worker dramatiq's and Redis' round trips and a claim, which at one per message was a fifth
    of its CPU."""
    return dramatiq.Message(
        queue_name=Queue.inbound.value,
        actor_name=ActorName.inbound_received.value,
        args=tuple(str(inbound_id) for inbound_id in inbound_ids),
        kwargs={},
        options={},
    )


def webhook_deliver(delivery_id: uuid.UUID) -> dramatiq.Message[None]:
    return dramatiq.Message(
        queue_name=Queue.webhooks.value,
        actor_name=ActorName.webhook_deliver.value,
        args=(str(delivery_id),),
        kwargs={},
        options={},
    )


def draft_send(draft_id: uuid.UUID) -> dramatiq.Message[None]:
    return dramatiq.Message(
        queue_name=Queue.outbox.value,
        actor_name=ActorName.draft_send.value,
        args=(str(draft_id),),
        kwargs={},
        options={},
    )


def deal_recur(deal_id: uuid.UUID) -> dramatiq.Message[None]:
    return dramatiq.Message(
        queue_name=Queue.scheduled.value,
        actor_name=ActorName.deal_recur.value,
        args=(str(deal_id),),
        kwargs={},
        options={},
    )


def inbound_groups(inbound_ids: list[uuid.UUID], per_message: int) -> list[dramatiq.Message[None]]:
    """Queue messages for these ids, `per_message` (a matcher batch) in each, in their order."""
    size = max(per_message, 1)
    return [inbound_received(*inbound_ids[start : start + size]) for start in range(0, len(inbound_ids), size)]


def enqueue_many(broker: RedisBroker, messages: list[dramatiq.Message[None]]) -> None:
    """Enqueue messages in one Redis round trip: dramatiq's own dispatch script, pipelined.

    `RedisBroker.enqueue` costs a round trip (and a GIL-holding thread hop in the gateway) per message; under load
    the gateway enqueues in batches, so this is where most of its CPU per message went. The broker's enqueue
    hooks still run for every message.
    """
    if not messages:
        return
    dispatch = broker.scripts["dispatch"]
    unpack_size = broker._max_unpack_size()  # type: ignore[no-untyped-call]
    prepared = [message.copy(options={"redis_message_id": str(uuid.uuid4())}) for message in messages]
    with broker.client.pipeline(transaction=False) as pipeline:
        for message in prepared:
            broker.emit_before("enqueue", message, None)
            arguments = [
                "enqueue",
                current_millis(),
                message.queue_name,
                broker.broker_id,
                broker.heartbeat_timeout,
                broker.dead_message_ttl,
                0,  # no maintenance (requeueing dead workers' messages): that is the consumers' job
                unpack_size,
                message.options["redis_message_id"],
                message.encode(),
            ]
            dispatch(keys=[broker.namespace], args=arguments, client=pipeline)
        pipeline.execute()
    for message in prepared:
        broker.emit_after("enqueue", message, None)
