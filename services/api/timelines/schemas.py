from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.api.common import EmailAddress


class MessageEntry(BaseModel):
    id: str
    thread_id: str
    subject: str | None
    sender: EmailAddress | None = Field(serialization_alias="from")
    direction: Literal["inbound", "outbound"]
    kind: str
    preview: str | None = Field(description="The message's new text (no quoted history), shortened.")
    attachment_count: int
    deal_id: str | None


class ActivityEntry(BaseModel):
    id: str
    type: str
    subject: str
    due_at: datetime | None
    done: bool
    person_id: str | None
    organization_id: str | None
    deal_id: str | None


class DealEventEntry(BaseModel):
    id: str
    deal_id: str
    deal_title: str
    type: str
    data: dict[str, Any]
    user_id: str | None


class TimelineEntry(BaseModel):
    kind: Literal["message", "activity", "deal_event"]
    id: str
    at: datetime = Field(description="When it happened: sent time, due time (or creation), event time.")
    message: MessageEntry | None = None
    activity: ActivityEntry | None = None
    deal_event: DealEventEntry | None = None
