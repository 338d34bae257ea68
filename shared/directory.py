"""Accounts, their API tokens and their users (with each user's Smart-BCC address)."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import Account, ApiToken, TokenScope, User

TOKEN_PREFIX = "mr_"  # noqa: S105 -- a prefix that lets secret scanners spot leaked tokens


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_bcc_local_part() -> str:
    # 16 characters from 32 = 80 random bits: not guessable, still short enough to read out loud.
    return _random_token(16)


def _random_token(length: int) -> str:
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"  # lower case, no look-alikes (l/1, o/0)
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class NewAccount:
    account_id: uuid.UUID
    api_token: str


def create_account(session: Session, name: str) -> NewAccount:
    account = Account(name=name, settings={})
    session.add(account)
    session.flush()
    token = create_token(session, account.id, TokenScope.admin)
    return NewAccount(account_id=account.id, api_token=token)


def create_token(session: Session, account_id: uuid.UUID, scope: TokenScope, user_id: uuid.UUID | None = None) -> str:
    return issue_token(session, account_id, scope, user_id=user_id)[1]


def issue_token(
    session: Session,
    account_id: uuid.UUID,
    scope: TokenScope,
    *,
    user_id: uuid.UUID | None = None,
    name: str | None = None,
) -> tuple[ApiToken, str]:
    """A new token row and the secret itself, which exists only in this return value (only its hash is stored).

    `user_id` must belong to the account: `LookupError` otherwise.
    """
    if session.get(Account, account_id) is None:
        raise LookupError(f"no account {account_id}")
    if user_id is not None and find_user(session, account_id, user_id) is None:
        raise LookupError(f"no user {user_id} in account {account_id}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(account_id=account_id, token_hash=hash_token(token), scope=scope, user_id=user_id, name=name)
    session.add(row)
    session.flush()
    return row, token


def revoke_token(session: Session, token_id: uuid.UUID, account_id: uuid.UUID | None = None) -> ApiToken | None:
    """Revoke a token (idempotently); None when there is no such token (in that account, when given)."""
    query = select(ApiToken).where(ApiToken.id == token_id)
    if account_id is not None:
        query = query.where(ApiToken.account_id == account_id)
    token = session.scalars(query.with_for_update()).one_or_none()
    if token is not None and token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
    return token


def find_token(session: Session, token: str) -> ApiToken | None:
    return session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    )


def create_user(session: Session, account_id: uuid.UUID, email: str, name: str | None) -> User:
    if session.get(Account, account_id) is None:
        raise LookupError(f"no account {account_id}")
    user = User(account_id=account_id, email=email.strip().lower(), name=name, bcc_local_part=new_bcc_local_part())
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, account_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
    return session.scalars(select(User).where(User.account_id == account_id, User.id == user_id)).one_or_none()


def rotate_bcc_address(session: Session, user: User) -> None:
    """Give the user a new Smart-BCC address; the old one stops being accepted at once (RCPT looks it up)."""
    user.bcc_local_part = new_bcc_local_part()
    session.flush()


def bcc_address(user: User, bcc_domain: str) -> str:
    return f"{user.bcc_local_part}@{bcc_domain}"


# What stands in for a Smart-BCC local part a reader may not see: as long as one, so no header line grows.
HIDDEN_BCC_LOCAL_PART = "smart-bcc-hidden"


def _bcc_addresses(bcc_domain: str) -> re.Pattern[bytes]:
    """A Smart-BCC address in raw bytes (a sub-address too); group 1 is its local part."""
    domain = re.escape(bcc_domain.encode())
    return re.compile(rb"(?<![\w.+-])([a-z0-9]{16})(?=(?:\+[^\s@<>\"]{0,200})?@" + domain + rb"(?![\w.-]))", re.I)


def bcc_local_parts_in(raw: bytes, bcc_domain: str) -> set[str]:
    """The Smart-BCC local parts written in a message's bytes as addresses, lower-cased."""
    return {found.decode().lower() for found in _bcc_addresses(bcc_domain).findall(raw)}


def without_bcc_local_parts(raw: bytes, bcc_domain: str, hidden: set[str]) -> bytes:
    """The bytes with these Smart-BCC local parts, where they are written as addresses, replaced by
    `HIDDEN_BCC_LOCAL_PART` (whoever reads an address can put mail into that user's CRM). Addresses inside
    encoded parts (base64, encoded words) stay as they are."""
    if not hidden:
        return raw

    def hide(address: re.Match[bytes]) -> bytes:
        local_part = address.group(1)
        return HIDDEN_BCC_LOCAL_PART.encode() if local_part.decode().lower() in hidden else local_part

    return _bcc_addresses(bcc_domain).sub(hide, raw)


def tagged_bcc_address(bcc_local_part: str, bcc_domain: str, tag: str) -> str:
    """A sub-address of a user's Smart-BCC address (`k3…+deal-<id>@…`): it reaches the same user (the gateway
    ignores the tag) and the matcher files the mail under the tagged record."""
    return f"{bcc_local_part}+{tag}@{bcc_domain}"
