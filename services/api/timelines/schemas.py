from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.api.common import EmailAddress
from services.api.provenance import Actor
from shared.models import DealEventType, Direction, MessageKind


class MessageEntry(BaseModel):
    id: str
    thread_id: str
    subject: str | None
    sender: EmailAddress | None = Field(serialization_alias="from")
    direction: Direction
    kind: MessageKind
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
    lead_id: str | None
    created_by: Actor | None


class NoteEntry(BaseModel):
    id: str
    content: str
    person_id: str | None
    organization_id: str | None
    deal_id: str | None
    lead_id: str | None
    created_by: Actor | None


class DealEventEntry(BaseModel):
    id: str
    deal_id: str
    deal_title: str
    type: DealEventType
    data: dict[str, Any]
    user_id: str | None
    actor: Actor | None = Field(description="Who did it.")


class TimelineEntry(BaseModel):
    kind: Literal["message", "activity", "note", "deal_event"]
    id: str
    at: datetime = Field(description="When it happened: sent time, due time (or creation), note or event time.")
    message: MessageEntry | None = None
    activity: ActivityEntry | None = None
    note: NoteEntry | None = None
    deal_event: DealEventEntry | None = None
