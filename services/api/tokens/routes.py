"""API tokens: list, create (the secret is shown once), revoke. Admin scope."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status

from services.api.common import Page, sid
from services.api.deps import CurrentCaller, DbSession, filter_id, parse_id, require_admin
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from services.api.tokens import service
from services.api.tokens.schemas import NewTokenOut, TokenIn, TokenOut
from shared.models import ApiToken

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], dependencies=[Depends(require_admin)])


@router.get("", response_model=Page[TokenOut])
def list_tokens(
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    include_revoked: bool = False,
) -> Page[TokenOut]:
    rows, next_cursor = service.list_tokens(session, caller, cursor, limit, include_revoked=include_revoked)
    return Page[TokenOut](data=[_out(t) for t in rows], next_cursor=next_cursor)


@router.post("", response_model=NewTokenOut, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenIn, caller: CurrentCaller, session: DbSession) -> NewTokenOut:
    user_id = filter_id(body.user_id)
    token, secret = service.create_token(session, caller, body.scope, user_id, body.name)
    return NewTokenOut(**_out(token).model_dump(), token=secret)


@router.get("/{token_id}", response_model=TokenOut)
def get_token(token_id: str, caller: CurrentCaller, session: DbSession) -> TokenOut:
    return _out(service.get_token(session, caller, parse_id(token_id, "Token")))


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def revoke_token(token_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    """Revoke the token at once. The row stays (revoked) so the audit trail does too."""
    service.revoke_token(session, caller, parse_id(token_id, "Token"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _out(token: ApiToken) -> TokenOut:
    return TokenOut(
        id=str(token.id),
        scope=token.scope,
        user_id=sid(token.user_id),
        name=token.name,
        created_at=token.created_at,
        revoked_at=token.revoked_at,
    )
