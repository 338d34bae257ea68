"""The dramatiq broker on Redis, and the names of what travels through it.

Queue messages carry ids, never mail: the gateway enqueues an inbound id, the matcher loads the rest from Postgres.
The gateway builds messages by name, so it does not import (or even need) the matcher's code.
"""

from __future__ import annotations

import enum
import uuid

import dramatiq
from dramatiq.brokers.redis import RedisBroker


class Queue(enum.StrEnum):
    inbound = "inbound"


class ActorName(enum.StrEnum):
    inbound_received = "inbound.received"


def make_broker(redis_url: str, namespace: str) -> RedisBroker:
    # Bounded socket waits: a hung Redis must not hang the gateway's enqueuer or a worker forever.
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=redis_url, namespace=namespace, socket_timeout=10, socket_connect_timeout=5
    )
    for queue in Queue:
        broker.declare_queue(queue.value)
    return broker


def inbound_received(inbound_id: uuid.UUID) -> dramatiq.Message[None]:
    return dramatiq.Message(
        queue_name=Queue.inbound.value,
        actor_name=ActorName.inbound_received.value,
        args=(str(inbound_id),),
        kwargs={},
        options={},
    )
