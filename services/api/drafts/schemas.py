"""Drafts: replies prepared in a thread, approved by the thread's owner, sent through the relay."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from services.api.common import Schema
from shared.models import DraftStatus

# One address, as a mail client takes it. Not EmailStr: that refuses special-use domains such as the Smart-BCC
# domain of a test or on-premise installation (bcc.mailroom.localhost), which a user may well BCC.
_ADDRESS = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def _address(value: str) -> str:
    value = value.strip()
    if not _ADDRESS.match(value) or ".." in value or "." not in value.rsplit("@", 1)[-1]:
        raise ValueError("not an e-mail address like jane@example.com")
    local, domain = value.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


Recipient = Annotated[str, AfterValidator(_address)]


class DraftIn(Schema):
    thread_id: str = Field(max_length=100)
    to: list[Recipient] = Field(
        default_factory=list, max_length=100, description="Default: whoever the thread's last message came from."
    )
    cc: list[Recipient] = Field(default_factory=list, max_length=100)
    bcc: list[Recipient] = Field(default_factory=list, max_length=100)
    subject: str | None = Field(default=None, max_length=1000, description="Default: `Re:` the thread's subject.")
    body: str = Field(min_length=1, max_length=1_000_000)
    user_id: str | None = Field(
        default=None,
        max_length=100,
        description="Whom it is sent as (and who approves it). Default: the caller's user, else the user whose "
        "mail the thread holds last.",
    )


class DraftPatch(Schema):
    to: list[Recipient] | None = Field(default=None, min_length=1, max_length=100)
    cc: list[Recipient] | None = Field(default=None, max_length=100)
    bcc: list[Recipient] | None = Field(default=None, max_length=100)
    subject: str | None = Field(default=None, min_length=1, max_length=1000)
    body: str | None = Field(default=None, min_length=1, max_length=1_000_000)


class Rejection(Schema):
    reason: str | None = Field(default=None, max_length=2000)


class AttemptOut(BaseModel):
    at: datetime
    error: str | None


class DraftOut(BaseModel):
    id: str
    thread_id: str
    user_id: str = Field(description="Sent as this user, who approves it.")
    author_user_id: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    subject: str
    body: str
    in_reply_to: str | None = Field(description="Message-ID of the message it answers.")
    references: list[str]
    message_id: str = Field(description="The Message-ID it is sent with (the same on every attempt).")
    status: DraftStatus
    submitted_at: datetime | None
    decided_at: datetime | None
    decided_by_user_id: str | None
    rejection_reason: str | None
    attempts: int
    next_attempt_at: datetime | None = Field(description="While `approved`: when the relay is tried (again).")
    last_error: str | None = Field(description="Why the last attempt failed.")
    attempt_log: list[AttemptOut]
    sent_at: datetime | None
    created_at: datetime
    updated_at: datetime
