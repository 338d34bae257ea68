"""Transaction-scoped advisory locks on names, so workers that meet the same thing take turns.

The unique constraints are what guarantee one row per thing; these locks only make the loser wait instead of
failing and retrying. Always lock in sorted order, as `lock_names` does, so two workers cannot deadlock. A matcher
batch takes every name its messages will need in one sorted call up front (`lock_all`); later calls for names it
already holds cost nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from sqlalchemy.orm import Session

from shared.db import DirectSql, execute_direct

# Keys taken at the top level of the session's transaction (never inside a savepoint, whose rollback would
# release them), so they are held until the commit.
_HELD = "mailroom.held_lock_keys"
_LOCK = DirectSql(
    "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) s"
)


def _lock_key(account_id: uuid.UUID, name: str) -> int:
    digest = hashlib.blake2b(f"{account_id}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_names(session: Session, account_id: uuid.UUID, names: Iterable[str]) -> None:
    _lock_keys(session, {_lock_key(account_id, name) for name in names})


def lock_all(session: Session, names: Iterable[tuple[uuid.UUID, str]]) -> None:
    """Lock (account, name) pairs of several accounts in one sorted round trip, and remember them as held.

    Call it at the top level of the transaction, before any savepoint."""
    keys = {_lock_key(account_id, name) for account_id, name in names}
    _lock_keys(session, keys)
    session.info.setdefault(_HELD, set()).update(keys)


def _lock_keys(session: Session, wanted: set[int]) -> None:
    held: set[int] = session.info.get(_HELD, set())
    keys = sorted(wanted - held)
    if not keys:
        return
    # One round trip; the ordered subquery makes Postgres take them in the sorted order.
    execute_direct(session, _LOCK, {"keys": keys})
