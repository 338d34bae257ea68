from __future__ import annotations

from pydantic import BaseModel, Field

from services.api.common import Schema
from services.api.crm.schemas import Ref


class CalendarFeedIn(Schema):
    user_id: Ref | None = Field(default=None, description="Whose feed; default (and only choice): the token's user.")


class CalendarFeedOut(BaseModel):
    user_id: str
    url: str = Field(
        description="The user's activities as iCalendar (RFC 5545), for Google Calendar, Outlook, Apple Calendar. "
        "Shown once: the URL is the secret; asking again gives a new one and the old one stops working."
    )
