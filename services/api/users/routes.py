"""Users: read with any token; create, rename, rotate the Smart-BCC address and manage aliases with `admin`."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from services.api.common import Page
from services.api.deps import AdminCaller, Caller, CurrentCaller, DbSession, get_settings, parse_id
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from services.api.problems import ProblemDetail
from services.api.users import service
from services.api.users.schemas import AliasConfirmed, AliasIn, AliasOut, UserIn, UserOut, UserPatch
from shared.directory import bcc_address
from shared.models import User, UserAlias

router = APIRouter(prefix="/v1/users", tags=["users"])


@router.get("", response_model=Page[UserOut])
def list_users(
    request: Request, caller: CurrentCaller, session: DbSession, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[UserOut]:
    rows, next_cursor = service.list_users(session, caller, cursor, limit)
    return Page[UserOut](data=_out(request, session, caller, rows), next_cursor=next_cursor)


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(request: Request, body: UserIn, caller: AdminCaller, session: DbSession) -> UserOut:
    return _out(request, session, caller, [service.create_user(session, caller, str(body.email), body.name)])[0]


@router.get("/{user_id}", response_model=UserOut)
def get_user(request: Request, user_id: str, caller: CurrentCaller, session: DbSession) -> UserOut:
    return _out(request, session, caller, [service.get_user(session, caller, parse_id(user_id, "User"))])[0]


@router.patch("/{user_id}", response_model=UserOut)
def update_user(request: Request, user_id: str, body: UserPatch, caller: AdminCaller, session: DbSession) -> UserOut:
    user = service.rename_user(session, caller, parse_id(user_id, "User"), body.name)
    return _out(request, session, caller, [user])[0]


@router.post("/{user_id}/bcc-address/rotate", response_model=UserOut)
def rotate_bcc_address(request: Request, user_id: str, caller: AdminCaller, session: DbSession) -> UserOut:
    """Issue a new Smart-BCC address; mail to the old one is refused from now on."""
    return _out(request, session, caller, [service.rotate_bcc(session, caller, parse_id(user_id, "User"))])[0]


@router.post(
    "/{user_id}/aliases",
    response_model=AliasOut,
    status_code=status.HTTP_201_CREATED,
    responses={502: {"model": ProblemDetail, "description": "The confirmation mail could not be sent."}},
)
def add_alias(request: Request, user_id: str, body: AliasIn, caller: AdminCaller, session: DbSession) -> AliasOut:
    """Another From address of the user (e.g. a shared sales@ mailbox). Unless `verified` is set, the address gets
    a confirmation link by mail (through MAILROOM_SMTP_RELAY_URL; without a relay an admin verifies it later)."""
    alias = service.add_alias(
        session, get_settings(request), caller, parse_id(user_id, "User"), str(body.address), verified=body.verified
    )
    return _alias(alias)


@router.post(
    "/{user_id}/aliases/{alias_id}/confirmation",
    response_model=AliasOut,
    responses={502: {"model": ProblemDetail, "description": "The confirmation mail could not be sent."}},
)
def resend_alias_confirmation(
    request: Request, user_id: str, alias_id: str, caller: AdminCaller, session: DbSession
) -> AliasOut:
    """Mail the alias a new confirmation link; the previous link stops working."""
    alias = service.resend_confirmation(
        session, get_settings(request), caller, parse_id(user_id, "User"), parse_id(alias_id, "Alias")
    )
    return _alias(alias)


@router.post("/{user_id}/aliases/{alias_id}/verify", response_model=AliasOut)
def verify_alias(user_id: str, alias_id: str, caller: AdminCaller, session: DbSession) -> AliasOut:
    """Mark the alias verified; then reprocess the mail that was held for it (`POST /v1/held-messages/reprocess`)."""
    return _alias(service.verify_alias(session, caller, parse_id(user_id, "User"), parse_id(alias_id, "Alias")))


@router.delete("/{user_id}/aliases/{alias_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_alias(user_id: str, alias_id: str, caller: AdminCaller, session: DbSession) -> Response:
    service.delete_alias(session, caller, parse_id(user_id, "User"), parse_id(alias_id, "Alias"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _out(request: Request, session: Session, caller: Caller, users: list[User]) -> list[UserOut]:
    domain = get_settings(request).bcc_domain
    aliases = service.aliases_of(session, users)
    return [
        UserOut(
            id=str(u.id),
            email=u.email,
            name=u.name,
            bcc_address=bcc_address(u, domain) if caller.sees_bcc_address_of(u.id) else None,
            aliases=[_alias(a) for a in aliases[u.id]],
            created_at=u.created_at,
        )
        for u in users
    ]


def _alias(alias: UserAlias) -> AliasOut:
    return AliasOut(
        id=str(alias.id),
        address=alias.address,
        verified=alias.verified_at is not None,
        verified_at=alias.verified_at,
        confirmation_sent_at=alias.confirmation_sent_at,
        created_at=alias.created_at,
    )


# Links in confirmation mail: no token (whoever holds the secret link proves they read that mailbox), and outside
# /v1/ because they are pages for people, not API operations.
confirmations_router = APIRouter(prefix="/alias-confirmations", tags=["users"])

# Spelled out (not `model=`): FastAPI would document a page route's errors as text/html.
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "The link is unknown or has expired.", "content": _PROBLEM},
    422: {"description": "The request is not valid.", "content": _PROBLEM},
}


@confirmations_router.get("/{token}", response_class=HTMLResponse, responses=_NOT_FOUND)
def alias_confirmation_page(request: Request, token: str, session: DbSession) -> HTMLResponse:
    """A page with a confirm button: opening the link alone (a mail scanner, a preview) confirms nothing."""
    alias = service.alias_of_link(session, get_settings(request), token)
    question = f"<p>Treat mail from {html.escape(alias.address)} as your own in Mailroom?</p>"
    form = _CONFIRM_FORM.format(action=html.escape(token))
    return HTMLResponse(_page("Confirm this sender address", question + form))


@confirmations_router.post(
    "/{token}",
    response_model=AliasConfirmed,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "Confirmed (HTML for browsers)"},
        **_NOT_FOUND,
    },
)
def confirm_alias(request: Request, token: str, session: DbSession) -> AliasConfirmed | HTMLResponse:
    """Verify the alias this link was sent to."""
    alias = service.confirm_alias(session, get_settings(request), token)
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(
            _page("Confirmed", f"<p>{html.escape(alias.address)} is now a verified sender address.</p>")
        )
    return AliasConfirmed(address=alias.address, verified_at=alias.verified_at)  # type: ignore[arg-type]


_CONFIRM_FORM = '<form method="post" action="{action}"><button type="submit">Confirm</button></form>'


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
