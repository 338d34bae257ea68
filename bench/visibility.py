"""How long after its `250` each message shows up in the API, measured from outside like a client would.

The poller follows `GET /v1/messages/feed`, the way an integration keeps up with a mailbox: every message arrives
there exactly once, and only once no transaction that began before it can still add one ahead of it. So a message
is seen no earlier than a client could rely on it, and the poller reads each message once instead of re-reading
the top of the newest-first list (the poller shares the CPUs with what it measures).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

PAGE_SIZE = 200


@dataclass
class VisibilityResult:
    expected: int
    latencies: list[float] = field(default_factory=list)  # seconds from 250 to first seen
    poll_seconds: list[float] = field(default_factory=list)  # one full poll round each
    last_seen: float | None = None  # `time.monotonic()` when the poller first saw the last expected message

    @property
    def invisible(self) -> int:
        return self.expected - len(self.latencies)


class VisibilityTracker:
    def __init__(self, api_url: str, token: str, *, poll_interval: float) -> None:
        self._client = httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self._poll_interval = poll_interval
        self._cursor: str | None = None
        self._accepted_at: dict[str, float] = {}
        self._seen_at: dict[str, float] = {}  # every Message-ID observed, expected or not yet
        self._latencies: dict[str, float] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def catch_up(self) -> None:
        """Read past what the account already has, so that tracking starts at the end of the feed."""
        await self._poll()

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
                        # Whatever committed just before the check; the feed shows it once nothing older runs.
                        await asyncio.sleep(self._poll_interval)
                        await self._poll()
                        break
            await asyncio.sleep(self._poll_interval)
        seen = [self._seen_at[message_id] for message_id in self._latencies]
        return VisibilityResult(
            expected=len(self._accepted_at),
            latencies=list(self._latencies.values()),
            poll_seconds=poll_seconds,
            last_seen=max(seen) if seen else None,
        )

    async def _poll(self) -> None:
        while True:
            page = await self._page()
            seen_now = time.monotonic()
            for item in page["data"]:
                message_id = item["message_id"]
                self._seen_at.setdefault(message_id, seen_now)
                accepted_at = self._accepted_at.get(message_id)
                if accepted_at is not None and message_id not in self._latencies:
                    self._latencies[message_id] = max(seen_now - accepted_at, 0.0)
            self._cursor = page["next_cursor"]
            if not page["has_more"]:
                return

    async def _page(self) -> dict[str, Any]:
        params: dict[str, str | int] = {"limit": PAGE_SIZE}
        if self._cursor is not None:
            params["cursor"] = self._cursor
        response = await self._client.get("/v1/messages/feed", params=params)
        response.raise_for_status()
        page: dict[str, Any] = response.json()
        return page
