"""Hand committed inbound ids to the matcher's queue, after the commit and off the SMTP session's path.

Losing an enqueue loses nothing: the row is already committed as `received`, and the matcher's recovery sweep
enqueues whatever waits too long. So a Redis outage costs latency, never mail, and never a `250`.
"""

from __future__ import annotations

import asyncio
import uuid

import redis
import structlog
from dramatiq.brokers.redis import RedisBroker

from shared import metrics
from shared.broker import enqueue_many, inbound_received

log = structlog.get_logger(__name__)


class AfterCommitEnqueuer:
    def __init__(self, broker: RedisBroker, *, max_batch: int = 256) -> None:
        self._broker = broker
        self._max_batch = max_batch
        self._ids: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    def submit(self, inbound_ids: list[uuid.UUID]) -> None:
        for inbound_id in inbound_ids:
            self._ids.put_nowait(inbound_id)

    async def drain(self, seconds: float) -> None:
        """Wait (bounded) until every submitted id was handed to Redis or given up on."""
        try:
            await asyncio.wait_for(self._ids.join(), seconds)
        except TimeoutError:
            log.warning("enqueue.drain_timeout", left_for_sweep=self._ids.qsize())

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            batch = [await self._ids.get()]
            while len(batch) < self._max_batch and not self._ids.empty():
                batch.append(self._ids.get_nowait())
            try:
                await asyncio.to_thread(self._send, batch)
            finally:
                for _ in batch:
                    self._ids.task_done()

    def _send(self, batch: list[uuid.UUID]) -> None:
        try:
            enqueue_many(self._broker, [inbound_received(inbound_id) for inbound_id in batch])
        except redis.RedisError as exc:
            log.warning("enqueue.failed_left_for_sweep", count=len(batch), error=str(exc))
            metrics.enqueue_failed(len(batch))
