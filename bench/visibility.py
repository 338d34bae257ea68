"""How long after its `250` each message shows up in `GET /v1/messages`, measured from outside like a client would.

The list is newest first and has no filter by Message-ID, so one poller reads the top of it in pages and goes
deeper only while a page still holds something it has not seen. A message whose matcher transaction began before
another's but committed after it appears below the top; it is still within the first `min_depth` messages, which
every round reads, because only the batches running concurrently can overtake it. A full scan at the end finds
anything the poller missed and counts it as seen then: an upper bound, never a made-up better latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

PAGE_SIZE = 100
FULL_SCAN_PAGE_SIZE = 200


@dataclass
class VisibilityResult:
    expected: int
    latencies: list[float] = field(default_factory=list)  # seconds from 250 to first seen
    missed_by_poller: int = 0  # found only by the final full scan, and counted as seen then (in `latencies`)
    poll_seconds: list[float] = field(default_factory=list)  # one full poll round each
    last_seen: float | None = None  # `time.monotonic()` when the poller first saw the last expected message

    @property
    def invisible(self) -> int:
        return self.expected - len(self.latencies)


class VisibilityTracker:
    def __init__(self, api_url: str, token: str, *, poll_interval: float, in_flight: int) -> None:
        """`in_flight`: how many messages the workers can hold in open transactions at once (processes × threads
        × batch size). The list is ordered by when each message's transaction began, and a batch may commit after
        batches that began later: every round reads at least that deep, in whole pages, before it stops at a page
        with nothing new. No deeper: the poller shares the CPUs with what it measures."""
        self._client = httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self._poll_interval = poll_interval
        self._min_depth = max(PAGE_SIZE, -(-in_flight // PAGE_SIZE) * PAGE_SIZE)
        self._accepted_at: dict[str, float] = {}
        self._seen_at: dict[str, float] = {}  # every Message-ID observed, expected or not yet
        self._latencies: dict[str, float] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    def expect(self, message_id: str, accepted_at: float) -> None:
        self._accepted_at[message_id] = accepted_at
        seen_at = self._seen_at.get(message_id)
        if seen_at is not None:
            # The worker can finish before the client has read the 250 off its socket.
            self._latencies[message_id] = max(seen_at - accepted_at, 0.0)

    async def track(
        self, pushing: asyncio.Event, *, straggler_seconds: float, settled: Callable[[], bool] | None = None
    ) -> VisibilityResult:
        """Poll until the push is over and all it got accepted is visible, or `straggler_seconds` after the push.

        `settled` says whether the pipeline has nothing left to do; when it has not, missing messages will never
        show up (held, failed), so waiting out the timeout would only slow the run down.
        """
        poll_seconds: list[float] = []
        deadline: float | None = None
        next_settled_check = 0.0
        while True:
            started = time.monotonic()
            await self._poll()
            poll_seconds.append(time.monotonic() - started)
            if not pushing.is_set():
                if len(self._latencies) == len(self._accepted_at):
                    break
                now = time.monotonic()
                deadline = deadline or now + straggler_seconds
                if now > deadline:
                    break
                if settled is not None and now > next_settled_check:
                    next_settled_check = now + 1.0
                    if await asyncio.to_thread(settled):
                        await self._poll()  # whatever committed just before the check
                        break
            await asyncio.sleep(self._poll_interval)
        missed = await self._full_scan()
        seen = [self._seen_at[message_id] for message_id in self._latencies]
        return VisibilityResult(
            expected=len(self._accepted_at),
            latencies=list(self._latencies.values()),
            missed_by_poller=missed,
            poll_seconds=poll_seconds,
            last_seen=max(seen) if seen else None,
        )

    async def _poll(self) -> None:
        cursor: str | None = None
        depth = 0
        while True:
            page = await self._page(PAGE_SIZE, cursor)
            seen_now = time.monotonic()
            fresh = 0
            for item in page["data"]:
                message_id = item["message_id"]
                if message_id in self._seen_at:
                    continue
                fresh += 1
                self._seen_at[message_id] = seen_now
                accepted_at = self._accepted_at.get(message_id)
                if accepted_at is not None:
                    self._latencies[message_id] = max(seen_now - accepted_at, 0.0)
            cursor = page["next_cursor"]
            depth += len(page["data"])
            if cursor is None or (not fresh and depth >= self._min_depth):
                return

    async def _full_scan(self) -> int:
        missed = 0
        cursor: str | None = None
        while True:
            page = await self._page(FULL_SCAN_PAGE_SIZE, cursor)
            for item in page["data"]:
                message_id = item["message_id"]
                if message_id in self._accepted_at and message_id not in self._latencies:
                    # Seen now at the latest: an upper bound, which can only make the run look slower.
                    missed += 1
                    self._seen_at[message_id] = time.monotonic()
                    self._latencies[message_id] = self._seen_at[message_id] - self._accepted_at[message_id]
            cursor = page["next_cursor"]
            if cursor is None:
                return missed

    async def _page(self, limit: int, cursor: str | None) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._client.get("/v1/messages", params=params)
        response.raise_for_status()
        page: dict[str, Any] = response.json()
        return page
