"""Custom fields: typed fields an account adds to its deals, persons and organizations."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from services.api.common import Schema
from shared.models import CustomFieldEntity, CustomFieldType

Option = Field(min_length=1, max_length=200)


class CustomFieldIn(Schema):
    entity: CustomFieldEntity
    key: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="Lower case letters, digits and `_`: the JSON key, the `custom.<key>` filter, the CSV column.",
    )
    label: str = Field(min_length=1, max_length=200)
    type: CustomFieldType
    options: list[str] = Field(default_factory=list, max_length=500, description="For `option`: the choices.")


class CustomFieldPatch(Schema):
    label: str | None = Field(default=None, min_length=1, max_length=200)
    options: list[str] | None = Field(
        default=None, max_length=500, description="Replaces the choices; values already stored stay."
    )


class CustomFieldOut(BaseModel):
    id: str
    entity: CustomFieldEntity
    key: str
    label: str
    type: CustomFieldType
    options: list[str]
    created_at: datetime
