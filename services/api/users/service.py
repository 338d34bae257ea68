"""Users of an account, their Smart-BCC addresses and their sender aliases."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import conflict, not_found
from shared import directory
from shared.addresses import normalize_address
from shared.models import User, UserAlias


def list_users(session: Session, caller: Caller, cursor: str | None, limit: int) -> tuple[list[User], str | None]:
    query = select(User).where(User.account_id == caller.account_id)
    rows = session.scalars(paginate(query, User.created_at, User.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda u: (u.created_at, u.id))


def get_user(session: Session, caller: Caller, user_id: uuid.UUID, *, for_update: bool = False) -> User:
    query = select(User).where(User.account_id == caller.account_id, User.id == user_id)
    user = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if user is None:
        raise not_found("User")
    return user


def aliases_of(session: Session, users: Sequence[User]) -> dict[uuid.UUID, list[UserAlias]]:
    aliases: dict[uuid.UUID, list[UserAlias]] = defaultdict(list)
    for alias in session.scalars(
        select(UserAlias).where(UserAlias.user_id.in_([u.id for u in users])).order_by(UserAlias.address)
    ):
        aliases[alias.user_id].append(alias)
    return aliases


def create_user(session: Session, caller: Caller, email: str, name: str | None) -> User:
    address = normalize_address(email)
    taken = session.scalar(select(User.id).where(User.account_id == caller.account_id, User.email == address))
    if taken is not None:
        raise conflict(f"{address} is already a user of this account.")
    return directory.create_user(session, caller.account_id, address, name)


def rename_user(session: Session, caller: Caller, user_id: uuid.UUID, name: str | None) -> User:
    user = get_user(session, caller, user_id, for_update=True)
    user.name = name
    return user


def rotate_bcc(session: Session, caller: Caller, user_id: uuid.UUID) -> User:
    user = get_user(session, caller, user_id, for_update=True)
    directory.rotate_bcc_address(session, user)
    return user


def add_alias(session: Session, caller: Caller, user_id: uuid.UUID, address: str, *, verified: bool) -> UserAlias:
    user = get_user(session, caller, user_id)
    alias_id = session.execute(
        insert(UserAlias)
        .values(
            id=uuid.uuid4(),
            account_id=caller.account_id,
            user_id=user.id,
            address=normalize_address(address),
            verified_at=datetime.now(UTC) if verified else None,
        )
        .on_conflict_do_nothing()
        .returning(UserAlias.id)
    ).scalar()
    if alias_id is None:
        raise conflict(f"{normalize_address(address)} is already an alias in this account.")
    return session.get_one(UserAlias, alias_id)


def get_alias(session: Session, caller: Caller, user_id: uuid.UUID, alias_id: uuid.UUID) -> UserAlias:
    alias = session.scalars(
        select(UserAlias).where(
            UserAlias.account_id == caller.account_id, UserAlias.user_id == user_id, UserAlias.id == alias_id
        )
    ).one_or_none()
    if alias is None:
        raise not_found("Alias")
    return alias


def verify_alias(session: Session, caller: Caller, user_id: uuid.UUID, alias_id: uuid.UUID) -> UserAlias:
    alias = get_alias(session, caller, user_id, alias_id)
    if alias.verified_at is None:
        alias.verified_at = datetime.now(UTC)
    return alias


def delete_alias(session: Session, caller: Caller, user_id: uuid.UUID, alias_id: uuid.UUID) -> None:
    session.delete(get_alias(session, caller, user_id, alias_id))
