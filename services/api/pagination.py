"""Keyset pagination with opaque cursors over a stable (sort time, id) order, newest first.

A cursor is the position of the last row a page returned, so rows inserted meanwhile never shift a page (no
duplicates, no gaps), and any page costs the same. Clients must treat cursors as opaque.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, TypeVar, TypeVarTuple

from fastapi import Query
from sqlalchemy import ColumnElement, Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from services.api.problems import Problem

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

Ts = TypeVarTuple("Ts")
Row = TypeVar("Row")
SortKey = ColumnElement[datetime] | InstrumentedAttribute[datetime]
RowId = ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID]

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page; omit for the first page.")
]


def encode_cursor(sort_value: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([sort_value.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        sort_value, row_id = json.loads(raw)
        parsed = datetime.fromisoformat(sort_value)
        if parsed.tzinfo is None:
            raise ValueError("cursor times are always zoned")
        return parsed, uuid.UUID(row_id)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise Problem(400, "invalid-cursor", "Invalid cursor", "Pass `next_cursor` back unchanged.") from exc


def encode_feed_cursor(transaction_id: int, row_id: uuid.UUID) -> str:
    raw = json.dumps([transaction_id, str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_feed_cursor(cursor: str) -> tuple[int, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        transaction_id, row_id = json.loads(raw)
        if not isinstance(transaction_id, int) or isinstance(transaction_id, bool) or transaction_id < 0:
            raise ValueError("a feed position is a transaction id")
        return transaction_id, uuid.UUID(row_id)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise Problem(400, "invalid-cursor", "Invalid cursor", "Pass `next_cursor` back unchanged.") from exc


def paginate(
    query: Select[*Ts],
    sort_key: SortKey,
    row_id: RowId,
    cursor: str | None,
    limit: int,
) -> Select[*Ts]:
    """Order newest first and keep the rows after `cursor`; fetches one extra row to know if there is a next page."""
    if cursor is not None:
        after_sort, after_id = decode_cursor(cursor)
        # A row comparison, which Postgres reads as a bound of an index on (…, sort key, id): a deep page starts
        # where the last one ended instead of scanning past everything before it.
        query = query.where(tuple_(sort_key, row_id) < tuple_(after_sort, after_id))
    return query.order_by(sort_key.desc(), row_id.desc()).limit(limit + 1)


def page_rows(
    rows: Sequence[Row], limit: int, position: Callable[[Row], tuple[datetime, uuid.UUID]]
) -> tuple[list[Row], str | None]:
    """The page's rows, and the cursor of the next page (None on the last)."""
    if len(rows) <= limit:
        return list(rows), None
    return list(rows[:limit]), encode_cursor(*position(rows[limit - 1]))
