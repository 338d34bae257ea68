from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from services.api.common import Schema
from shared.models import WebhookDeliveryStatus, WebhookEvent


class WebhookIn(Schema):
    url: str = Field(min_length=8, max_length=2000, description="An http(s) URL that accepts POSTed JSON.")
    events: list[WebhookEvent] = Field(min_length=1, max_length=len(WebhookEvent))
    description: str | None = Field(default=None, max_length=500)
    active: bool = True


class WebhookPatch(Schema):
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    events: list[WebhookEvent] | None = Field(default=None, min_length=1, max_length=len(WebhookEvent))
    description: str | None = Field(default=None, max_length=500)
    active: bool | None = None


class WebhookOut(BaseModel):
    id: str
    url: str
    events: list[WebhookEvent]
    description: str | None
    active: bool
    created_at: datetime


class WebhookWithSecret(WebhookOut):
    secret: str = Field(
        description="Signing secret, shown only when created or rotated. Each delivery carries "
        '`Mailroom-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`.'
    )


class Attempt(BaseModel):
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: str
    webhook_id: str
    event: WebhookEvent
    event_id: str = Field(description="The same for every subscription receiving this event; deduplicate on it.")
    status: WebhookDeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="For pending deliveries.")
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[Attempt]
    payload: dict[str, Any] = Field(description="The JSON body that is (or was) sent.")
    created_at: datetime
