"""API tokens of an account (SQL here and in shared.directory, which the CLI shares)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import invalid, not_found
from shared import directory
from shared.models import ApiToken, TokenScope


def list_tokens(
    session: Session, caller: Caller, cursor: str | None, limit: int, *, include_revoked: bool
) -> tuple[list[ApiToken], str | None]:
    query = select(ApiToken).where(ApiToken.account_id == caller.account_id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    rows = session.scalars(paginate(query, ApiToken.created_at, ApiToken.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda t: (t.created_at, t.id))


def get_token(session: Session, caller: Caller, token_id: uuid.UUID) -> ApiToken:
    token = session.scalars(
        select(ApiToken).where(ApiToken.account_id == caller.account_id, ApiToken.id == token_id)
    ).one_or_none()
    if token is None:
        raise not_found("Token")
    return token


def create_token(
    session: Session, caller: Caller, scope: TokenScope, user_id: uuid.UUID | None, name: str | None
) -> tuple[ApiToken, str]:
    try:
        return directory.issue_token(session, caller.account_id, scope, user_id=user_id, name=name)
    except LookupError:
        raise invalid("user_id", "no such user in this account") from None


def revoke_token(session: Session, caller: Caller, token_id: uuid.UUID) -> None:
    if directory.revoke_token(session, token_id, caller.account_id) is None:
        raise not_found("Token")
