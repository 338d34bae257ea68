"""Mailbox: messages, threads and attachment downloads, all scoped to the caller's account."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated

import nh3
from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.deps import Blobs, CurrentCaller, DbSession, parse_id
from services.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, encode_cursor, paginate
from services.api.problems import not_found
from services.api.schemas import AttachmentOut, EmailAddress, MessageOut, Page, ThreadOut
from shared.models import Attachment, InboundMessage, Message, MessagePerson, Thread

router = APIRouter(prefix="/v1", tags=["mailbox"])

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@router.get("/messages", response_model=Page[MessageOut], response_model_by_alias=True)
def list_messages(
    caller: CurrentCaller,
    session: DbSession,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    thread_id: str | None = None,
) -> Page[MessageOut]:
    query = select(Message).where(Message.account_id == caller.account_id)
    if thread_id is not None:
        query = query.where(Message.thread_id == parse_id(thread_id, "Thread"))
    rows = list(session.scalars(paginate(query, Message.created_at, Message.id, cursor, limit)).all())
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return Page[MessageOut](data=_render(session, rows[:limit]), next_cursor=next_cursor)


@router.get("/messages/{message_id}", response_model=MessageOut, response_model_by_alias=True)
def get_message(message_id: str, caller: CurrentCaller, session: DbSession) -> MessageOut:
    message = session.scalars(
        select(Message).where(Message.account_id == caller.account_id, Message.id == parse_id(message_id, "Message"))
    ).one_or_none()
    if message is None:
        raise not_found("Message")
    return _render(session, [message])[0]


@router.get("/threads/{thread_id}", response_model=ThreadOut, response_model_by_alias=True)
def get_thread(thread_id: str, caller: CurrentCaller, session: DbSession) -> ThreadOut:
    thread = session.scalars(
        select(Thread).where(Thread.account_id == caller.account_id, Thread.id == parse_id(thread_id, "Thread"))
    ).one_or_none()
    if thread is None:
        raise not_found("Thread")
    messages = session.scalars(
        select(Message)
        .where(Message.account_id == caller.account_id, Message.thread_id == thread.id)
        .order_by(Message.sent_at.asc().nulls_last(), Message.created_at, Message.id)
    ).all()
    return ThreadOut(
        id=str(thread.id),
        subject=thread.subject,
        deal_id=_str(thread.deal_id),
        last_message_at=thread.last_message_at,
        created_at=thread.created_at,
        messages=_render(session, messages),
    )


@router.get(
    "/attachments/{attachment_id}/content",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The exact stored bytes."}},
)
def download_attachment(attachment_id: str, caller: CurrentCaller, session: DbSession, blobs: Blobs) -> Response:
    attachment = session.scalars(
        select(Attachment).where(
            Attachment.account_id == caller.account_id, Attachment.id == parse_id(attachment_id, "Attachment")
        )
    ).one_or_none()
    if attachment is None:
        raise not_found("Attachment")
    content = blobs.get(caller.account_id, attachment.sha256)
    filename = (attachment.filename or "attachment").replace('"', "")
    return Response(
        content,
        # Never let a browser run what a stranger mailed us: everything is a download, nothing is sniffed.
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename=\"{_ascii(filename)}\"; filename*=UTF-8''{_quote(filename)}",
            "X-Content-Type-Options": "nosniff",
            "ETag": f'"{attachment.sha256}"',
        },
    )


def _render(session: Session, messages: Sequence[Message]) -> list[MessageOut]:
    if not messages:
        return []
    ids = [m.id for m in messages]
    attachments: dict[uuid.UUID, list[AttachmentOut]] = defaultdict(list)
    for attachment in session.scalars(
        select(Attachment).where(Attachment.message_id.in_(ids)).order_by(Attachment.created_at, Attachment.id)
    ):
        attachments[attachment.message_id].append(
            AttachmentOut(
                id=str(attachment.id),
                filename=attachment.filename,
                content_type=attachment.content_type,
                size=attachment.size,
                sha256=attachment.sha256,
                content_id=attachment.content_id,
            )
        )
    persons: dict[uuid.UUID, list[str]] = defaultdict(list)
    for link in session.execute(
        select(MessagePerson.message_id, MessagePerson.person_id).where(MessagePerson.message_id.in_(ids)).distinct()
    ):
        persons[link.message_id].append(str(link.person_id))
    deals = dict(
        session.execute(select(Thread.id, Thread.deal_id).where(Thread.id.in_({m.thread_id for m in messages}))).all()
    )
    received = dict(
        session.execute(
            select(InboundMessage.message_id, InboundMessage.received_at).where(InboundMessage.message_id.in_(ids))
        ).all()
    )
    return [
        MessageOut(
            id=str(m.id),
            thread_id=str(m.thread_id),
            message_id=m.message_id_header,
            subject=m.subject,
            sender=EmailAddress(name=m.from_name, address=m.from_address) if m.from_address else None,
            to=[EmailAddress.model_validate(a) for a in m.to],
            cc=[EmailAddress.model_validate(a) for a in m.cc],
            sent_at=m.sent_at,
            received_at=received.get(m.id, m.created_at),
            direction=m.direction,  # type: ignore[arg-type]  # stored from the Direction enum
            text_body=m.text_body,
            html_body=_sanitize(m.html_body),
            attachments=attachments[m.id],
            person_ids=sorted(set(persons[m.id])),
            deal_id=_str(deals.get(m.thread_id)),
            defects=list(m.defects),
        )
        for m in messages
    ]


def _sanitize(html: str | None) -> str | None:
    if html is None:
        return None
    # No scripts, no handlers, no remote images or styles: showing a mail must not tell its sender it was read.
    return nh3.clean(html, url_schemes={"http", "https", "mailto", "cid"}, link_rel="noopener noreferrer nofollow")


def _str(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _ascii(value: str) -> str:
    return value.encode("ascii", "replace").decode().replace("?", "_")


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
