""" "Who set it": the actor behind every create and update of a CRM record, in one shape for every record.

A user acting through a user-bound token, an integration acting through an account token (named by the token's
label), or the matcher (with the rule that decided and the message it read). Stored as JSON on the row
(`created_by`, `updated_by`), returned as `Actor` on the record and in timelines, so a client draws one badge.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.deps import Caller
from shared.models import CreatedFrom, OrganizationRule, PersonRule, User

_ACTOR_CACHE = "mailroom.actor"
MATCHER_NAME = "Mailroom matcher"


class Actor(BaseModel):
    kind: Literal["user", "integration", "matcher"] = Field(
        description="`user` (a user-bound token), `integration` (an account token), `matcher` (made from e-mail)."
    )
    name: str | None = Field(default=None, description="The user's name, the token's label, or the matcher.")
    user_id: str | None = None
    token_id: str | None = None
    rule: str | None = Field(default=None, description="For the matcher: the rule that made or changed the record.")
    message_id: str | None = Field(default=None, description="For the matcher: the message it read.")


class Tracked(Protocol):
    created_by: dict[str, Any] | None
    updated_by: dict[str, Any] | None
    updated_at: datetime | None


def caller_actor(session: Session, caller: Caller) -> dict[str, Any]:
    """The caller as an actor, looked up once per request."""
    cached: dict[str, Any] | None = session.info.get(_ACTOR_CACHE)
    if cached is not None and cached.get("token_id") == str(caller.token_id):
        return cached
    if caller.user_id is not None:
        user = session.execute(select(User.name, User.email).where(User.id == caller.user_id)).one_or_none()
        name = None if user is None else (user.name or user.email)
        actor = Actor(kind="user", name=name, user_id=str(caller.user_id), token_id=str(caller.token_id))
    else:
        actor = Actor(kind="integration", name=caller.token_name or "API token", token_id=str(caller.token_id))
    stored = actor.model_dump()
    session.info[_ACTOR_CACHE] = stored
    return stored


def matcher_actor(rule: str | None, message_id: uuid.UUID | None) -> dict[str, Any]:
    return Actor(
        kind="matcher", name=MATCHER_NAME, rule=rule, message_id=None if message_id is None else str(message_id)
    ).model_dump()


def stamp_created(session: Session, caller: Caller, row: Tracked) -> None:
    row.created_by = caller_actor(session, caller)
    row.updated_by = row.created_by


def stamp_updated(session: Session, caller: Caller, row: Tracked) -> None:
    row.updated_by = caller_actor(session, caller)
    row.updated_at = datetime.now(UTC)


def actor_out(stored: dict[str, Any] | None) -> Actor | None:
    return None if stored is None else Actor.model_validate(stored)


def created_by_of(
    stored: dict[str, Any] | None,
    created_from: CreatedFrom,
    rule: PersonRule | OrganizationRule | None,
    message_id: uuid.UUID | None,
) -> Actor | None:
    """Persons and organizations the matcher made carry their rule and message in their own columns; they are the
    matcher's provenance, shown in the common shape."""
    if stored is not None:
        return Actor.model_validate(stored)
    if created_from == CreatedFrom.email:
        return Actor.model_validate(matcher_actor(rule, message_id))
    return None
