"""The JSON shapes of the API. Ids are opaque strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, EmailStr, Field

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    data: list[Item]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class EmailAddress(BaseModel):
    name: str | None
    address: str


class AttachmentOut(BaseModel):
    id: str
    filename: str | None
    content_type: str
    size: int
    sha256: str
    content_id: str | None


class MessageOut(BaseModel):
    id: str
    thread_id: str
    message_id: str
    subject: str | None
    sender: EmailAddress | None = Field(serialization_alias="from", description="The From header.")
    to: list[EmailAddress]
    cc: list[EmailAddress]
    sent_at: datetime | None
    received_at: datetime
    direction: Literal["inbound", "outbound"]
    text_body: str | None
    html_body: str | None = Field(description="Sanitized: no scripts, no event handlers, no remote content.")
    attachments: list[AttachmentOut]
    person_ids: list[str]
    deal_id: str | None
    defects: list[str]


class ThreadOut(BaseModel):
    id: str
    subject: str | None
    deal_id: str | None
    last_message_at: datetime | None
    created_at: datetime
    messages: list[MessageOut]


class PersonIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    emails: list[EmailStr] = Field(default_factory=list, max_length=50)


class PersonOut(BaseModel):
    id: str
    name: str
    emails: list[str]
    created_from: str
    created_by_rule: str | None
    created_by_message_id: str | None
    created_at: datetime


class DealIn(BaseModel):
    title: str = Field(min_length=1, max_length=500)
    person_id: str
    status: Literal["open", "won", "lost"] = "open"
    value: Decimal | None = Field(default=None, ge=0, max_digits=18, decimal_places=2)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class DealOut(BaseModel):
    id: str
    title: str
    person_id: str | None
    status: Literal["open", "won", "lost"]
    value: Decimal | None
    currency: str | None
    created_at: datetime
