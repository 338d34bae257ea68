"""What every route gets: a database session, and the account the bearer token belongs to."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from services.api.problems import Problem
from shared.blobstore import BlobStore
from shared.directory import find_token
from shared.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="An API token from `mailroom accounts create`.")


@dataclass(frozen=True)
class Caller:
    account_id: uuid.UUID
    scope: str
    user_id: uuid.UUID | None


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


DbSession = Annotated[Session, Depends(get_session)]


def get_caller(
    session: DbSession, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "unauthorized", "Authentication required", "Send `Authorization: Bearer <token>`.")
    token = find_token(session, credentials.credentials)
    if token is None:
        raise Problem(401, "unauthorized", "Invalid token", "The token is unknown or was revoked.")
    return Caller(account_id=token.account_id, scope=token.scope, user_id=token.user_id)


CurrentCaller = Annotated[Caller, Depends(get_caller)]
Blobs = Annotated[BlobStore, Depends(get_blobs)]


def parse_id(value: str, what: str) -> uuid.UUID:
    """Ids are opaque strings to clients; anything that is not one of ours is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "not-found", f"{what} not found", f"There is no {what.lower()} with this id.") from None
