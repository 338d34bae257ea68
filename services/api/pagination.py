"""Opaque cursors over a stable (created_at, id) order, newest first."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from services.api.problems import Problem

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T", bound=Any)


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, row_id = json.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(row_id)
    except (ValueError, TypeError) as exc:
        raise Problem(400, "invalid-cursor", "Invalid cursor", "Pass `next_cursor` back unchanged.") from exc


def paginate(
    query: Select[T],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    cursor: str | None,
    limit: int,
) -> Select[T]:
    if cursor is not None:
        after_created, after_id = decode_cursor(cursor)
        query = query.where(or_(created_at < after_created, and_(created_at == after_created, row_id < after_id)))
    return query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)
