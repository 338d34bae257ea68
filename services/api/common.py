"""Shapes and helpers every domain of the API shares."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    data: list[Item]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class FeedPage(BaseModel, Generic[Item]):
    data: list[Item]
    next_cursor: str = Field(description="Pass as `cursor` next time, also when `data` is empty.")
    has_more: bool = Field(description="The page was full: more is there already, read on without waiting.")


class Schema(BaseModel):
    """A request body. Unknown fields are a mistake worth reporting, not something to ignore silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        # Postgres text cannot hold NUL; say so as a validation error instead of failing in the database.
        if contains_nul(data):
            raise ValueError("text must not contain NUL characters")
        return data


def contains_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False


class EmailAddress(BaseModel):
    name: str | None
    address: str


def sid(value: uuid.UUID | None) -> str | None:
    """Ids leave the API as opaque strings."""
    return None if value is None else str(value)


def newest(created_at: datetime, row_id: uuid.UUID) -> tuple[datetime, uuid.UUID]:
    return created_at, row_id
