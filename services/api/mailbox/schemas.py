from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from services.api.common import EmailAddress, Schema
from shared.models import AuthSummary, Direction, MessageKind, MessagePersonRole, ThreadDealRule, ThreadVisibility


class AttachmentOut(BaseModel):
    id: str
    message_id: str
    filename: str | None
    content_type: str = Field(description="As the sender declared it; downloads are served with a safe type.")
    size: int
    sha256: str
    content_id: str | None


class FileOut(AttachmentOut):
    """An attachment with enough of its message to render a row of a files list."""

    thread_id: str
    subject: str | None
    sender: EmailAddress | None = Field(serialization_alias="from")
    sent_at: datetime | None


class Participant(BaseModel):
    role: MessagePersonRole
    name: str | None
    address: str
    person_id: str | None = Field(description="The CRM person with this address, if any.")


class Forwarded(BaseModel):
    """Provenance of a forwarded reply: the message is the original; this says who forwarded it, and how sure
    the parser was that it read the original correctly (0–1)."""

    by_user_id: str | None
    at: datetime | None
    confidence: float | None


class SenderAuthenticationOut(BaseModel):
    """How the mail that brought the message authenticated (SPF, DKIM, DMARC alignment of the From domain)."""

    summary: AuthSummary = Field(
        description="pass: SPF or DKIM passed for a domain aligned with From; fail: a check failed; none: nothing "
        "was published or signed."
    )
    header: str | None = Field(description="The Authentication-Results header (RFC 8601) for these results.")
    source: str | None = Field(description="verified (by Mailroom), or the trusted relay whose results were used.")

    @classmethod
    def of(cls, summary: AuthSummary | None, results: dict[str, Any] | None) -> SenderAuthenticationOut | None:
        if summary is None:
            return None
        details = results or {}
        return cls(summary=summary, header=details.get("header"), source=details.get("source"))


class MessageOut(BaseModel):
    id: str
    thread_id: str
    user_id: str = Field(description="The user whose Smart-BCC address received it.")
    message_id: str = Field(description="The Message-ID header, without angle brackets.")
    in_reply_to: str | None
    references: list[str]
    subject: str | None
    sender: EmailAddress | None = Field(serialization_alias="from", description="The From header.")
    to: list[EmailAddress]
    cc: list[EmailAddress]
    participants: list[Participant]
    sent_at: datetime | None
    received_at: datetime
    direction: Direction
    kind: MessageKind = Field(description="sent, forwarded, contact, auto_reply, bounce or bulk.")
    kind_reason: str | None = Field(description="Why the matcher classified it so.")
    forwarded: Forwarded | None
    authentication: SenderAuthenticationOut | None = Field(
        default=None, description="Sender authentication of the mail; null when it was not checked."
    )
    text_body: str | None
    html_body: str | None = Field(
        description="Sanitized: no scripts, event handlers, styles or `javascript:` links; remote images only "
        "with `remote_content=true`."
    )
    new_text: str | None = Field(description="The message's own words, without quoted history or signature.")
    attachments: list[AttachmentOut]
    person_ids: list[str]
    deal_id: str | None
    defects: list[str]


class ThreadSummary(BaseModel):
    id: str
    subject: str | None
    deal_id: str | None
    deal_rule: ThreadDealRule | None = Field(description="Why the thread has its deal (or explicitly none).")
    visibility: ThreadVisibility
    message_count: int
    person_ids: list[str]
    first_message_at: datetime | None
    last_message_at: datetime | None
    created_at: datetime


class ThreadOut(ThreadSummary):
    messages: list[MessageOut] = Field(description="Oldest first.")


class ThreadPatch(Schema):
    deal_id: str | None = Field(
        default=None, description="Link the whole thread to this deal; null to say it belongs to none."
    )
    visibility: ThreadVisibility | None = None
