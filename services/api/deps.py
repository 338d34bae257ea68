"""What every route gets: a database session, the caller (account, scope, user) behind the bearer token, ids.

Scopes are enforced here, not route by route, so a new route cannot forget them: a `read` token may only use
GET; anything else needs `write`; routers for tokens, users and webhooks additionally require `admin`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from dramatiq.brokers.redis import RedisBroker
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from services.api.limits import client_subject, enforce_rate_limit
from services.api.problems import Problem, not_found
from shared.blobstore import BlobStore
from shared.directory import find_token
from shared.models import TokenScope
from shared.settings import Settings

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token (`mailroom accounts create`, `mailroom tokens create` or `POST /v1/tokens`).",
)

_RANK = {TokenScope.read: 0, TokenScope.write: 1, TokenScope.admin: 2}
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    account_id: uuid.UUID
    scope: TokenScope
    user_id: uuid.UUID | None  # set when the token acts for one user (and sees that user's private threads)
    token_id: uuid.UUID
    token_name: str | None = None  # names an integration in "who set it" badges

    def allows(self, needed: TokenScope) -> bool:
        return _RANK[self.scope] >= _RANK[needed]

    def sees_bcc_address_of(self, user_id: uuid.UUID) -> bool:
        """A Smart-BCC address lets anyone put mail into the user's CRM: only the user's own token and an
        account-wide admin token (which can rotate it anyway) may read it."""
        if self.user_id is not None:
            return self.user_id == user_id
        return self.scope is TokenScope.admin


def get_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as session, session.begin():
        yield session


def get_blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_broker(request: Request) -> RedisBroker:
    broker: RedisBroker = request.app.state.broker
    return broker


# "function" scope: the transaction commits before the response is sent, so a 2xx means the change is durable
# (and a failed commit is a 5xx, not a success the client saw while the row vanished).
DbSession = Annotated[Session, Depends(get_session, scope="function")]


def get_caller(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        enforce_rate_limit(request, client_subject(request))
        raise Problem(401, "unauthorized", "Authentication required", "Send `Authorization: Bearer <token>`.")
    token = find_token(session, credentials.credentials)
    if token is None:
        # Guessing tokens costs the guesser's address its rate, like any request without a valid token.
        enforce_rate_limit(request, client_subject(request))
        raise Problem(401, "unauthorized", "Invalid token", "The token is unknown or was revoked.")
    enforce_rate_limit(request, f"token:{token.id}")
    caller = Caller(
        account_id=token.account_id,
        scope=token.scope,
        user_id=token.user_id,
        token_id=token.id,
        token_name=token.name,
    )
    if request.method not in _SAFE_METHODS and not caller.allows(TokenScope.write):
        raise insufficient_scope(TokenScope.write)
    return caller


CurrentCaller = Annotated[Caller, Depends(get_caller)]


def require_admin(caller: CurrentCaller) -> Caller:
    if not caller.allows(TokenScope.admin):
        raise insufficient_scope(TokenScope.admin)
    return caller


AdminCaller = Annotated[Caller, Depends(require_admin)]
Blobs = Annotated[BlobStore, Depends(get_blobs)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Broker = Annotated[RedisBroker, Depends(get_broker)]


def insufficient_scope(needed: TokenScope) -> Problem:
    return Problem(
        403, "insufficient-scope", "Insufficient scope", f"This needs a token with scope `{needed}` or higher."
    )


def parse_id(value: str, what: str) -> uuid.UUID:
    """Ids are opaque strings to clients; anything that is not one of ours is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(what) from None


NO_MATCH = uuid.UUID(int=0)


def filter_id(value: str | None) -> uuid.UUID | None:
    """An id used as a list filter: one that cannot exist matches nothing (an empty page, never an error)."""
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return NO_MATCH
