from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from services.api.common import Schema
from services.api.mailbox.schemas import SenderAuthenticationOut
from shared.models import InboundStatus


class HeldOut(BaseModel):
    id: str = Field(description="The inbound message id (the one in the gateway's `250 queued as` reply).")
    status: InboundStatus
    hold_reason: str | None = Field(description="Why the matcher held it (for `held`).")
    last_error: str | None = Field(description="The last processing error (for `failed`).")
    attempts: int
    user_id: str
    envelope_from: str
    envelope_to: str | None = Field(
        description="The Smart-BCC address it was sent to; null unless the token may see that user's address."
    )
    received_at: datetime
    size: int
    subject: str | None = Field(description="From the raw headers, to recognise the mail.")
    sender: str | None = Field(serialization_alias="from", description="The raw From header.")
    authentication: SenderAuthenticationOut | None = Field(
        default=None, description="Sender authentication as checked when it was processed; null before that."
    )


class ReprocessAll(Schema):
    status: Literal["held", "failed"] | None = Field(default=None, description="Only these; default both.")
    reason_contains: str | None = Field(default=None, max_length=200, description="Only holds whose reason has it.")


class Reprocessed(BaseModel):
    count: int = Field(description="How many messages were queued for processing again.")
