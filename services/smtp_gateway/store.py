"""The gateway's only database work: find the user behind a Smart-BCC address, and commit raw messages.

Commits are grouped: whatever DATA commands are waiting when a committer becomes free go into one transaction, so
under load many messages share one fsync while a lone message still commits at once (no timer, no added wait).
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

log = structlog.get_logger(__name__)

_FIND_USER = "SELECT id, account_id FROM users WHERE bcc_local_part = %s"
_INSERT_INBOUND = (
    "INSERT INTO inbound_messages"
    " (id, account_id, user_id, envelope_from, envelope_to, peer, helo, raw, size, status, attempts)"
    # %b: the raw bytes travel in binary, not as hex text twice their size.
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %b, %s, 'received', 0)"
)

T = TypeVar("T")


@dataclass(frozen=True)
class Recipient:
    address: str
    user_id: uuid.UUID
    account_id: uuid.UUID


@dataclass(frozen=True)
class NewInbound:
    recipient: Recipient
    envelope_from: str
    peer: str | None
    raw: bytes
    helo: str | None = None  # for SPF, which checks the HELO name of mail with an empty envelope sender


class InboundStore:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        committers: int = 4,
        max_batch: int = 64,
        recipient_cache_seconds: float = 10.0,
        lookup_timeout: float = 5.0,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._waiting: asyncio.Queue[tuple[list[NewInbound], asyncio.Future[list[uuid.UUID]]]] = asyncio.Queue()
        self._committers = [asyncio.create_task(self._commit_loop()) for _ in range(committers)]
        self._owners = _OwnerCache(recipient_cache_seconds)
        # RCPT lookups may hold half the pool, never all of it: a flood of address guesses slows other RCPTs down,
        # but commits (what turns into 250s) always find a connection.
        self._lookup_slots = asyncio.Semaphore(max(1, pool.max_size // 2))
        self._lookup_timeout = lookup_timeout

    async def find_recipient(self, local_part: str, address: str) -> Recipient | None:
        owner = self._owners.get(local_part)
        if owner is _Cached.NOT_CACHED:
            owner = await self._find_owner(local_part)
            self._owners.put(local_part, owner)
        return None if owner is None else Recipient(address, *owner)

    async def _find_owner(self, local_part: str) -> tuple[uuid.UUID, uuid.UUID] | None:
        async def lookup(conn: AsyncConnection) -> tuple[uuid.UUID, uuid.UUID] | None:
            return await (await conn.execute(_FIND_USER, (local_part,))).fetchone()

        # Waiting for a slot counts against the same bound as waiting for a connection: past it, RCPT says 451.
        async with asyncio.timeout(self._lookup_timeout), self._lookup_slots:
            return await self._with_connection(lookup)

    async def persist(self, rows: list[NewInbound]) -> list[uuid.UUID]:
        """Commit the rows (one per recipient) and return their ids; raises if they were not committed."""
        done: asyncio.Future[list[uuid.UUID]] = asyncio.get_running_loop().create_future()
        self._waiting.put_nowait((rows, done))
        return await done

    async def close(self) -> None:
        for task in self._committers:
            task.cancel()
        await asyncio.gather(*self._committers, return_exceptions=True)

    async def _commit_loop(self) -> None:
        while True:
            batch = [await self._waiting.get()]
            while len(batch) < self._max_batch and not self._waiting.empty():
                batch.append(self._waiting.get_nowait())
            try:
                ids = await self._insert([rows for rows, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0][1], exc)
                    continue
                # One bad message must not fail its neighbours: retry each on its own.
                for rows, done in batch:
                    try:
                        _settle(done, (await self._insert([rows]))[0])
                    except Exception as single_exc:
                        _settle(done, single_exc)
            else:
                for (_, done), message_ids in zip(batch, ids, strict=True):
                    _settle(done, message_ids)
                # One line per commit, not per message: at full load logging was a tenth of the gateway's CPU.
                log.info("smtp.committed", inbound_ids=[str(i) for message_ids in ids for i in message_ids])

    async def _insert(self, messages: list[list[NewInbound]]) -> list[list[uuid.UUID]]:
        ids = [[uuid.uuid4() for _ in rows] for rows in messages]
        params = [
            (
                inbound_id,
                row.recipient.account_id,
                row.recipient.user_id,
                row.envelope_from,
                row.recipient.address,
                row.peer,
                row.helo,
                row.raw,
                len(row.raw),
            )
            for rows, row_ids in zip(messages, ids, strict=True)
            for row, inbound_id in zip(rows, row_ids, strict=True)
        ]

        async def insert(conn: AsyncConnection) -> None:
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.executemany(_INSERT_INBOUND, params)

        await self._with_connection(insert)
        return ids

    async def _with_connection(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` on a pooled connection; once more, on checked connections, if the first was already dead.

        A connection the server dropped (restart, failover, idle timeout) fails on its first statement, before
        anything was written, so trying again is safe. Checking every connection before use would cost a round
        trip per commit instead.
        """
        try:
            async with self._pool.connection() as conn:
                return await work(conn)
        except psycopg.OperationalError:
            log.warning("smtp.database_connection_lost_retrying")
            # The other idle connections most likely died with it (a server restart): replace them all first.
            await self._pool.check()
            async with self._pool.connection() as conn:
                return await work(conn)


class _Cached(enum.Enum):
    NOT_CACHED = enum.auto()


Owner = tuple[uuid.UUID, uuid.UUID]  # (user id, account id)


class _OwnerCache:
    """Who owns a Smart-BCC local part, or that nobody does, remembered for a few seconds.

    Addresses change rarely and RCPT is on every message's path; remembering misses too makes a sender that
    repeats a wrong address cost nothing. Bounded: an address-guessing flood evicts its own oldest guesses.
    """

    def __init__(self, seconds: float, max_entries: int = 50_000) -> None:
        self._seconds = seconds
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, Owner | None]] = {}

    def get(self, local_part: str) -> Owner | Literal[_Cached.NOT_CACHED] | None:
        entry = self._entries.get(local_part)
        if entry is None or entry[0] <= time.monotonic():
            return _Cached.NOT_CACHED
        return entry[1]

    def put(self, local_part: str, owner: Owner | None) -> None:
        if not self._seconds:
            return
        # Re-inserted at the end, so the dict stays ordered by expiry and the first entry is the oldest.
        self._entries.pop(local_part, None)
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[local_part] = (time.monotonic() + self._seconds, owner)


def _settle(done: asyncio.Future[list[uuid.UUID]], outcome: list[uuid.UUID] | BaseException) -> None:
    if done.done():  # the SMTP session went away meanwhile
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
