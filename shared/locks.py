"""Transaction-scoped advisory locks on names, so workers that meet the same thing take turns.

The unique constraints are what guarantee one row per thing; these locks only make the loser wait instead of
failing and retrying. Always lock in sorted order, as `lock_names` does, so two workers cannot deadlock.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session


def _lock_key(account_id: uuid.UUID, name: str) -> int:
    digest = hashlib.blake2b(f"{account_id}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_names(session: Session, account_id: uuid.UUID, names: Iterable[str]) -> None:
    keys = sorted({_lock_key(account_id, name) for name in names})
    if not keys:
        return
    # One round trip; the ordered subquery makes Postgres take them in the sorted order.
    session.execute(
        text("SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) s"),
        {"keys": keys},
    )
