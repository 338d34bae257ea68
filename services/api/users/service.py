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
from services.api.problems import Problem, conflict, not_found
from services.api.users import confirmation
from shared import directory, outbound
from shared.addresses import normalize_address
from shared.models import User, UserAlias
from shared.settings import Settings


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


def add_alias(
    session: Session, settings: Settings, caller: Caller, user_id: uuid.UUID, address: str, *, verified: bool
) -> UserAlias:
    """Add the alias; unless the admin vouches for it, mail it a confirmation link (when a relay is configured)."""
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
    alias = session.get_one(UserAlias, alias_id)
    if not verified and outbound.is_configured(settings):
        send_confirmation(session, settings, user, alias)
    return alias


def get_alias(
    session: Session, caller: Caller, user_id: uuid.UUID, alias_id: uuid.UUID, *, for_update: bool = False
) -> UserAlias:
    query = select(UserAlias).where(
        UserAlias.account_id == caller.account_id, UserAlias.user_id == user_id, UserAlias.id == alias_id
    )
    alias = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if alias is None:
        raise not_found("Alias")
    return alias


def send_confirmation(session: Session, settings: Settings, user: User, alias: UserAlias) -> None:
    """Mail a new confirmation link to the alias (an earlier link stops working); 502 if the relay fails."""
    token, digest = confirmation.new_token()
    alias.confirmation_token_sha256 = digest
    alias.confirmation_sent_at = datetime.now(UTC)
    session.flush()
    try:
        outbound.send(settings, confirmation.confirmation_mail(settings, user, alias, token))
    except outbound.OutboundError as exc:
        # The request's transaction rolls back with the problem: no alias claims a link that was never sent.
        raise Problem(
            502, "mail-not-sent", "The confirmation mail could not be sent", f"{exc}. Nothing was changed."
        ) from exc


def resend_confirmation(
    session: Session, settings: Settings, caller: Caller, user_id: uuid.UUID, alias_id: uuid.UUID
) -> UserAlias:
    alias = get_alias(session, caller, user_id, alias_id, for_update=True)
    if alias.verified_at is not None:
        raise conflict(f"{alias.address} is already verified.")
    if not outbound.is_configured(settings):
        raise conflict("No SMTP relay is configured (MAILROOM_SMTP_RELAY_URL); verify the alias as an admin instead.")
    send_confirmation(session, settings, get_user(session, caller, user_id), alias)
    return alias


def alias_of_link(session: Session, settings: Settings, token: str, *, for_update: bool = False) -> UserAlias:
    """The alias a confirmation link was sent to; an unknown or expired link is a 404."""
    query = select(UserAlias).where(UserAlias.confirmation_token_sha256 == confirmation.token_hash(token))
    alias = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if alias is None or (alias.verified_at is None and confirmation.expired(settings, alias)):
        raise Problem(
            404,
            "not-found",
            "Confirmation link not found",
            "This link is unknown or has expired; ask your Mailroom admin to send a new one.",
        )
    return alias


def confirm_alias(session: Session, settings: Settings, token: str) -> UserAlias:
    """Verify the alias whose link this is; confirming twice is fine."""
    alias = alias_of_link(session, settings, token, for_update=True)
    if alias.verified_at is None:
        alias.verified_at = datetime.now(UTC)
    return alias


def verify_alias(session: Session, caller: Caller, user_id: uuid.UUID, alias_id: uuid.UUID) -> UserAlias:
    alias = get_alias(session, caller, user_id, alias_id)
    if alias.verified_at is None:
        alias.verified_at = datetime.now(UTC)
    return alias


def delete_alias(session: Session, caller: Caller, user_id: uuid.UUID, alias_id: uuid.UUID) -> None:
    session.delete(get_alias(session, caller, user_id, alias_id))
