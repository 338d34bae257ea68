"""Rows to JSON shapes for the mailbox (shared by the chooser, timelines and files)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from services.api.common import EmailAddress, sid
from services.api.deps import Caller
from services.api.mailbox.sanitize import sanitize_html
from services.api.mailbox.schemas import (
    AttachmentOut,
    FileOut,
    Forwarded,
    MessageOut,
    Participant,
    SenderAuthenticationOut,
    ThreadSummary,
)
from services.api.mailbox.service import MessageRow, persons_by_address, shown_deal_ids, thread_stats
from shared.models import Attachment, Message, MessagePersonRole, Thread


def attachment_out(attachment: Attachment) -> AttachmentOut:
    return AttachmentOut(
        id=str(attachment.id),
        message_id=str(attachment.message_id),
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        sha256=attachment.sha256,
        content_id=attachment.content_id,
    )


def file_out(attachment: Attachment, message: Message) -> FileOut:
    return FileOut(
        **attachment_out(attachment).model_dump(),
        thread_id=str(message.thread_id),
        subject=message.subject,
        sender=_sender(message),
        sent_at=message.sent_at,
    )


def messages_out(
    session: Session, caller: Caller, messages: Sequence[MessageRow], *, allow_remote: bool = False
) -> list[MessageOut]:
    if not messages:
        return []
    addresses = {
        address.lower()
        for m in messages
        for address in [m["from_address"] or "", *(a.get("address", "") for a in [*m["to"], *m["cc"]])]
        if address
    }
    people = persons_by_address(session, caller, addresses)
    return [_message(m, people, allow_remote) for m in messages]


def _message(m: MessageRow, people: dict[str, str], allow_remote: bool) -> MessageOut:
    forwarded = None
    if m["forwarded_by_user_id"] is not None or m["forwarded_at"] is not None:
        forwarded = Forwarded(
            by_user_id=m["forwarded_by_user_id"], at=m["forwarded_at"], confidence=m["forward_confidence"]
        )
    from_name, from_address, to, cc, html_body = m["from_name"], m["from_address"], m["to"], m["cc"], m["html_body"]
    return MessageOut(
        id=m["id"],
        thread_id=m["thread_id"],
        user_id=m["user_id"],
        message_id=m["message_id_header"],
        in_reply_to=m["in_reply_to"],
        references=m["references"],
        subject=m["subject"],
        sender=EmailAddress(name=from_name, address=from_address) if from_address else None,
        to=[_address(a) for a in to],
        cc=[_address(a) for a in cc],
        participants=_participants(from_name, from_address, to, cc, people),
        sent_at=m["sent_at"],
        received_at=m["received_at"],
        direction=m["direction"],
        kind=m["kind"],
        kind_reason=m["kind_reason"],
        forwarded=forwarded,
        authentication=SenderAuthenticationOut.of(m["auth_summary"], m["auth_results"]),
        text_body=m["text_body"],
        html_body=None if html_body is None else sanitize_html(html_body, allow_remote=allow_remote),
        new_text=m["new_text"],
        attachments=[AttachmentOut(**a) for a in m["attachments"] or ()],
        person_ids=m["person_ids"] or [],
        deal_id=m["deal_id"],
        defects=m["defects"],
    )


def _participants(
    from_name: str | None,
    from_address: str | None,
    to: list[dict[str, Any]],
    cc: list[dict[str, Any]],
    people: dict[str, str],
) -> list[Participant]:
    found: list[Participant] = []
    if from_address:
        found.append(
            Participant(
                role=MessagePersonRole.from_,
                name=from_name,
                address=from_address,
                person_id=people.get(from_address.lower()),
            )
        )
    for role, addresses in ((MessagePersonRole.to, to), (MessagePersonRole.cc, cc)):
        for a in addresses:
            address = str(a.get("address", ""))
            found.append(
                Participant(role=role, name=a.get("name"), address=address, person_id=people.get(address.lower()))
            )
    return found


def _sender(m: Message) -> EmailAddress | None:
    return EmailAddress(name=m.from_name, address=m.from_address) if m.from_address else None


def _address(value: dict[str, object]) -> EmailAddress:
    name = value.get("name")
    return EmailAddress(name=None if name is None else str(name), address=str(value.get("address", "")))


def thread_summaries(session: Session, caller: Caller, threads: Sequence[Thread]) -> list[ThreadSummary]:
    stats = thread_stats(session, threads)
    deal_ids = shown_deal_ids(session, caller, {t.id: t.deal_id for t in threads})
    return [
        ThreadSummary(
            id=str(t.id),
            subject=t.subject,
            deal_id=sid(deal_ids[t.id]),
            deal_rule=t.deal_rule if deal_ids[t.id] == t.deal_id else None,
            visibility=t.visibility,
            message_count=stats[t.id].message_count,
            person_ids=stats[t.id].person_ids,
            first_message_at=stats[t.id].first_message_at,
            last_message_at=t.last_message_at,
            created_at=t.created_at,
        )
        for t in threads
    ]
