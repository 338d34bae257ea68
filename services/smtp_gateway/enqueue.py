"""Hand committed inbound ids to the matcher's queue, after the commit and off the SMTP session's path.

Losing an enqueue loses nothing: the row is already committed as `received`. While Redis is away the ids wait
here (bounded) and are sent again about every second, so mail flows within seconds of Redis coming back. The
matcher's recovery sweep stays the safety net for what this process cannot keep: ids past the bound, ids left
at shutdown or in a crash.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import uuid

import redis
import structlog
from dramatiq.brokers.redis import RedisBroker

from shared import metrics
from shared.broker import enqueue_many, inbound_groups

log = structlog.get_logger(__name__)

_FIRST_RETRY_SECONDS = 0.25
_MAX_RETRY_SECONDS = 1.0


class AfterCommitEnqueuer:
    def __init__(
        self,
        broker: RedisBroker,
        *,
        ids_per_message: int = 1,
        linger_seconds: float = 0.0,
        max_batch: int = 256,
        max_unsent: int = 100_000,
    ) -> None:
        self._broker = broker
        self._ids_per_message = ids_per_message
        self._linger_seconds = linger_seconds
        self._max_batch = max_batch
        self._max_unsent = max_unsent
        self._ids: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        # Taken from the queue, not yet in Redis, oldest first.
        self._unsent: collections.deque[uuid.UUID] = collections.deque()
        self._dropped = 0  # in this outage, past max_unsent
        self._draining = False
        self._task = asyncio.create_task(self._run())

    def submit(self, inbound_ids: list[uuid.UUID]) -> None:
        for inbound_id in inbound_ids:
            self._ids.put_nowait(inbound_id)

    async def drain(self, seconds: float) -> None:
        """Wait (bounded) until every submitted id was handed to Redis, or Redis failed once more."""
        # At shutdown a failing Redis is not waited for: the sweep enqueues what is left, and a stop must be quick.
        self._draining = True
        try:
            await asyncio.wait_for(self._ids.join(), seconds)
        except TimeoutError:
            log.warning("enqueue.drain_timeout", left_for_sweep=self._ids.qsize() + len(self._unsent))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        retry_in = _FIRST_RETRY_SECONDS
        failing = False
        while True:
            if not self._unsent:
                self._keep(await self._ids.get())
                if self._linger_seconds and self._ids.qsize() + 1 < self._ids_per_message:
                    # A moment for more: a batch of one costs the matcher several times more per message than
                    # a batch of a few, and at a moderate rate that difference alone saturated the machine.
                    await asyncio.sleep(self._linger_seconds)
            while not self._ids.empty():
                self._keep(self._ids.get_nowait())
            batch = list(itertools.islice(self._unsent, self._max_batch))
            error = await asyncio.to_thread(self._send, batch)
            if error is None:
                self._forget(len(batch))
                if failing:
                    log.info("enqueue.recovered", waiting=len(self._unsent), left_for_sweep=self._dropped)
                    failing, self._dropped = False, 0
                retry_in = _FIRST_RETRY_SECONDS
                continue
            if self._draining:
                log.warning("enqueue.failed_left_for_sweep", count=len(self._unsent), error=error)
                self._forget(len(self._unsent))
                continue
            if not failing:
                # One line per outage, not one per retry.
                log.warning("enqueue.failed_retrying", waiting=len(self._unsent), error=error)
                failing = True
            await asyncio.sleep(retry_in)
            retry_in = min(retry_in * 2, _MAX_RETRY_SECONDS)

    def _keep(self, inbound_id: uuid.UUID) -> None:
        if len(self._unsent) >= self._max_unsent:
            # The oldest is committed as `received`; the sweep will enqueue it.
            if not self._dropped:
                log.warning("enqueue.full_left_for_sweep", waiting=len(self._unsent))
            self._dropped += 1
            self._forget(1)
        self._unsent.append(inbound_id)

    def _forget(self, count: int) -> None:
        for _ in range(count):
            self._unsent.popleft()
            self._ids.task_done()

    def _send(self, batch: list[uuid.UUID]) -> str | None:
        """None once the batch is in Redis, else what went wrong."""
        try:
            enqueue_many(self._broker, inbound_groups(batch, self._ids_per_message))
        except redis.RedisError as exc:
            metrics.enqueue_failed(len(batch))
            return str(exc)
        return None
