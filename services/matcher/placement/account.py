"""What the matcher needs to know about the account a message belongs to, loaded once per batch."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache
from importlib import resources

from sqlalchemy.orm import Session

from shared.account_settings import AccountSettings
from shared.addresses import normalize_address
from shared.db import DirectSql, execute_direct


@cache
def free_mail_domains() -> frozenset[str]:
    text = resources.files("services.matcher.placement").joinpath("data/free_mail_domains.txt").read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


@dataclass(frozen=True)
class AccountUser:
    """What placement says about a user: who mail counts as sent by, and how a hold reason names them."""

    id: uuid.UUID
    email: str
    name: str | None


@dataclass(frozen=True)
class AccountContext:
    account_id: uuid.UUID
    settings: AccountSettings
    users: dict[uuid.UUID, AccountUser]
    # Every address that is one of the account's users (login addresses and all aliases, verified or not).
    user_addresses: dict[str, uuid.UUID]
    # Per user: the addresses that make mail count as sent by that user (login address and verified aliases).
    verified: dict[uuid.UUID, frozenset[str]]
    internal_domains: frozenset[str]

    def is_internal(self, address: str) -> bool:
        address = normalize_address(address)
        return address in self.user_addresses or domain_of(address) in self.internal_domains

    def canonical(self, address: str) -> str:
        """The address as persons are keyed: lower case, and without a +tag when the account folds them."""
        address = normalize_address(address)
        if self.settings.fold_subaddresses and "+" in address.split("@", 1)[0]:
            local, _, domain = address.partition("@")
            return f"{local.split('+', 1)[0]}@{domain}"
        return address


# The account's settings and every address of its users (login addresses, always verified, and aliases) in one
# fixed statement: it runs for every batch, and building ORM selects cost more than running them.
_ACCOUNT = DirectSql(
    "SELECT 'account' AS kind, CAST(NULL AS uuid) AS user_id, CAST(NULL AS text) AS address,"
    " CAST(NULL AS boolean) AS verified, CAST(NULL AS text) AS name, settings FROM accounts WHERE id = :account_id"
    " UNION ALL SELECT 'user', id, email, true, name, NULL FROM users WHERE account_id = :account_id"
    " UNION ALL SELECT 'alias', user_id, address, verified_at IS NOT NULL, NULL, NULL FROM user_aliases"
    " WHERE account_id = :account_id"
)


def load_account(session: Session, account_id: uuid.UUID) -> AccountContext:
    rows = execute_direct(session, _ACCOUNT, {"account_id": account_id}).fetchall()
    stored_settings = [row.settings for row in rows if row.kind == "account"]
    if not stored_settings:
        raise LookupError(f"account {account_id} does not exist")
    settings = AccountSettings.of(stored_settings[0])
    addresses = [(row.user_id, row.address, row.verified) for row in rows if row.kind != "account"]
    users = {row.user_id: AccountUser(row.user_id, row.address, row.name) for row in rows if row.kind == "user"}
    user_addresses: dict[str, uuid.UUID] = {}
    verified: dict[uuid.UUID, set[str]] = {}
    for user_id, address, is_verified in addresses:
        user_addresses[normalize_address(address)] = user_id
        if is_verified:
            verified.setdefault(user_id, set()).add(normalize_address(address))
    # The users' own work domains are internal; a user on gmail.com must not make every gmail.com user a colleague.
    work_domains = {domain_of(a) for a in user_addresses} - free_mail_domains()
    internal = {d.lower().lstrip("@") for d in settings.internal_domains} | work_domains
    return AccountContext(
        account_id=account_id,
        settings=settings,
        users=users,
        user_addresses=user_addresses,
        verified={user_id: frozenset(addresses) for user_id, addresses in verified.items()},
        internal_domains=frozenset(internal),
    )
