"""Accounts, their API tokens and their users (with each user's Smart-BCC address)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

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
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(account_id=account_id, token_hash=hash_token(token), scope=scope.value, user_id=user_id))
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


def bcc_address(user: User, bcc_domain: str) -> str:
    return f"{user.bcc_local_part}@{bcc_domain}"
