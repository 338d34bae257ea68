"""Mailbox: threads, messages, raw mail, attachments and the files of a person, organization or deal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response

from services.api.chooser.service import link_thread
from services.api.common import FeedPage, Page
from services.api.deps import Blobs, CurrentCaller, DbSession, filter_id, get_settings, parse_id
from services.api.mailbox import downloads, service
from services.api.mailbox.render import attachment_out, file_out, messages_out, thread_summaries
from services.api.mailbox.schemas import AttachmentOut, FileOut, MessageOut, ThreadOut, ThreadPatch, ThreadSummary
from services.api.mailbox.service import Owner, ThreadFilters
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from services.api.problems import ProblemDetail, not_found

router = APIRouter(prefix="/v1", tags=["mailbox"])

RemoteContent = Annotated[
    bool, Query(description="Keep remote images in `html_body` (tells the sender the mail was opened).")
]


@router.get("/threads", response_model=Page[ThreadSummary])
def list_threads(
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    person_id: str | None = None,
    organization_id: str | None = None,
    deal_id: str | None = None,
    user_id: Annotated[str | None, Query(description="Threads with mail received by this user.")] = None,
    has_deal: bool | None = None,
    since: Annotated[datetime | None, Query(description="Last activity at or after this time.")] = None,
    until: Annotated[datetime | None, Query(description="Last activity before this time.")] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="Text in subjects or bodies.")] = None,
) -> Page[ThreadSummary]:
    """Threads, most recently active first."""
    filters = ThreadFilters(
        person_id=filter_id(person_id),
        organization_id=filter_id(organization_id),
        deal_id=filter_id(deal_id),
        user_id=filter_id(user_id),
        has_deal=has_deal,
        since=since,
        until=until,
        q=q,
    )
    rows, next_cursor = service.list_threads(session, caller, filters, cursor, limit)
    return Page[ThreadSummary](data=thread_summaries(session, caller, rows), next_cursor=next_cursor)


@router.get("/threads/{thread_id}", response_model=ThreadOut, response_model_by_alias=True)
def get_thread(
    thread_id: str, caller: CurrentCaller, session: DbSession, remote_content: RemoteContent = False
) -> ThreadOut:
    """A thread with all its messages, oldest first."""
    thread = service.get_thread(session, caller, parse_id(thread_id, "Thread"))
    messages = service.thread_messages(session, caller, thread.id)
    [summary] = thread_summaries(session, caller, [thread])
    return ThreadOut(
        **summary.model_dump(),
        messages=messages_out(session, caller, messages, allow_remote=remote_content),
    )


@router.patch("/threads/{thread_id}", response_model=ThreadSummary)
def update_thread(thread_id: str, body: ThreadPatch, caller: CurrentCaller, session: DbSession) -> ThreadSummary:
    """Set the thread's deal (`deal_id`, or null for none — for the whole thread and its later mail) and/or its
    visibility."""
    thread_uuid = parse_id(thread_id, "Thread")
    thread = service.get_thread(session, caller, thread_uuid, for_update=True)
    if "deal_id" in body.model_fields_set:
        deal_id = None if body.deal_id is None else filter_id(body.deal_id)
        thread = link_thread(session, caller, thread_uuid, deal_id)
    if body.visibility is not None:
        service.set_visibility(thread, body.visibility)
    return thread_summaries(session, caller, [thread])[0]


@router.get("/messages", response_model=Page[MessageOut], response_model_by_alias=True)
def list_messages(
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    thread_id: str | None = None,
    remote_content: RemoteContent = False,
) -> Page[MessageOut]:
    """Messages, most recently stored first."""
    rows, next_cursor = service.list_messages(session, caller, filter_id(thread_id), cursor, limit)
    return Page[MessageOut](
        data=messages_out(session, caller, rows, allow_remote=remote_content), next_cursor=next_cursor
    )


@router.get("/messages/feed", response_model=FeedPage[MessageOut], response_model_by_alias=True)
def message_feed(
    caller: CurrentCaller,
    session: DbSession,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="`next_cursor` of the previous read; omit to start with the oldest."),
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    remote_content: RemoteContent = False,
) -> FeedPage[MessageOut]:
    """Messages in the order they were stored, oldest first: poll with the last `next_cursor` to get each new
    message exactly once, including those whose storing took longer than others' (which `GET /v1/messages`,
    newest first, can show below messages already read). A message appears once every transaction that began
    before it and may store mail has ended (an import does not count), usually within a second."""
    rows, next_cursor = service.message_feed(session, caller, cursor, limit)
    return FeedPage[MessageOut](
        data=messages_out(session, caller, rows, allow_remote=remote_content),
        next_cursor=next_cursor,
        has_more=len(rows) == limit,
    )


@router.get("/messages/{message_id}", response_model=MessageOut, response_model_by_alias=True)
def get_message(
    message_id: str, caller: CurrentCaller, session: DbSession, remote_content: RemoteContent = False
) -> MessageOut:
    message = service.get_message(session, caller, parse_id(message_id, "Message"))
    return messages_out(session, caller, [message], allow_remote=remote_content)[0]


@router.get(
    "/messages/{message_id}/raw",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {"schema": {"type": "string"}}}, "description": "The .eml."}},
)
def get_raw_message(message_id: str, caller: CurrentCaller, session: DbSession, request: Request) -> Response:
    """The message as it was received (an .eml file). Smart-BCC addresses that the token may not see (another
    user's, for a user's token; every user's, for an account-wide token short of `admin`) read
    `smart-bcc-hidden@…`, as long as the original: whoever knows one can put mail into that user's CRM."""
    bcc_domain = get_settings(request).bcc_domain
    raw = service.raw_message(session, caller, parse_id(message_id, "Message"), bcc_domain)
    return Response(
        raw,
        media_type="message/rfc822",
        headers={
            "Content-Disposition": downloads.disposition(f"{message_id}.eml", inline=False),
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/attachments/{attachment_id}", response_model=AttachmentOut)
def get_attachment(attachment_id: str, caller: CurrentCaller, session: DbSession) -> AttachmentOut:
    return attachment_out(service.get_attachment(session, caller, parse_id(attachment_id, "Attachment")))


@router.get(
    "/attachments/{attachment_id}/content",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}, "description": "The bytes."},
        206: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}, "description": "A range."},
        304: {"description": "Not modified (`If-None-Match` matched the ETag)."},
        416: {"description": "The range cannot be satisfied."},
    },
)
def download_attachment(
    attachment_id: str,
    caller: CurrentCaller,
    session: DbSession,
    blobs: Blobs,
    inline: Annotated[bool, Query(description="Show a raster image inline; ignored for every other type.")] = False,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header()] = None,
    if_range: Annotated[str | None, Header()] = None,
) -> Response:
    """The stored bytes, exactly, with `ETag` and `Range` support. Always a download (`Content-Disposition:
    attachment`), except raster images with `inline=true`; never sniffed."""
    attachment = service.get_attachment(session, caller, parse_id(attachment_id, "Attachment"))
    try:
        content = blobs.get(caller.account_id, attachment.sha256)
    except KeyError:
        raise not_found("Attachment content") from None
    return downloads.serve(
        content,
        etag=f'"{attachment.sha256}"',
        content_type=downloads.safe_content_type(attachment.content_type),
        disposition_header=downloads.disposition(
            attachment.filename, inline=inline and downloads.is_raster_image(attachment.content_type)
        ),
        if_none_match=if_none_match,
        range_header=range_header,
        if_range=if_range,
    )


def _files(owner: Owner) -> Callable[..., Page[FileOut]]:
    def list_files(
        owner_id: str,
        caller: CurrentCaller,
        session: DbSession,
        cursor: Cursor = None,
        limit: Limit = DEFAULT_LIMIT,
    ) -> Page[FileOut]:
        rows, next_cursor = service.list_files(
            session, caller, owner, parse_id(owner_id, owner.value.capitalize()), cursor, limit
        )
        return Page[FileOut](data=[file_out(a, m) for a, m in rows], next_cursor=next_cursor)

    # Named after the owner in the path (`person_id`…); set here because the name is only known at run time.
    list_files.__annotations__["owner_id"] = Annotated[str, Path(alias=f"{owner.value}_id")]
    list_files.__doc__ = f"Every attachment of every message linked to the {owner.value}, newest first."
    return list_files


for _owner, _path in ((Owner.person, "persons"), (Owner.organization, "organizations"), (Owner.deal, "deals")):
    router.add_api_route(
        f"/{_path}/{{{_owner.value}_id}}/files",
        _files(_owner),
        methods=["GET"],
        response_model=Page[FileOut],
        response_model_by_alias=True,
        name=f"list_{_owner.value}_files",
        tags=["files"],
        responses={404: {"model": ProblemDetail, "description": f"No such {_owner.value} in your account."}},
    )
