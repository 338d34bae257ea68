"""The persons behind a message's external addresses: found, created when missing (race-safe), or left alone
for a reason a user can read (role address, blocklist, deleted by the user)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from services.matcher.mail.parsing import Address
from services.matcher.placement.account import AccountContext, domain_of
from services.matcher.placement.rows import PERSON_EMAILS, PERSONS, insert_later
from shared.db import DirectSql, execute_direct
from shared.locks import lock_names
from shared.models import CreatedFrom, OrganizationRule, PersonRule

RULE_RECIPIENT_OF_SENT_MAIL = PersonRule.recipient_of_sent_mail
RULE_PARTICIPANT_OF_FORWARDED_MAIL = PersonRule.participant_of_forwarded_mail
RULE_PARTICIPANT_OF_CONTACT_MAIL = PersonRule.participant_of_contact_mail

# Mailboxes of machines and departments, not of people one sells to.
_ROLE_LOCAL_PART = re.compile(
    r"^(no-?reply|do-?not-?reply|donotreply|mailer-daemon|postmaster|hostmaster|webmaster|abuse|bounces?"
    r"|notifications?|alerts?|newsletters?|news|marketing|mailer|daemon|root|info|support|sales|billing"
    r"|invoices?|accounts?|help|helpdesk|service|contact|office|admin|team|hello|jobs|careers|press"
    r"|reply|replies|unsubscribe)([-_.+].*)?$",
    re.IGNORECASE,
)


def is_role_address(address: str) -> bool:
    local = address.split("@", 1)[0]
    return bool(_ROLE_LOCAL_PART.match(local)) or "noreply" in local.lower() or "no-reply" in local.lower()


def display_name(address: Address) -> str:
    """The name to show for a new person: the display name, else something readable from the local part."""
    name = (address.name or "").strip().strip("'\"").strip()
    if name and "@" not in name:
        if name.count(",") == 1:  # "Last, First"
            last, first = (part.strip() for part in name.split(","))
            if last and first:
                return f"{first} {last}"
        return name
    local = address.address.split("@", 1)[0].split("+", 1)[0]
    words = [word for word in re.split(r"[._\-]+", local) if word and not word.isdigit()]
    return " ".join(word.capitalize() for word in words) or address.address


@dataclass
class PeoplePlan:
    """For each canonical address: its live person, or why it gets none, or that it will be created."""

    found: dict[str, uuid.UUID] = field(default_factory=dict)
    missing: dict[str, Address] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def plan_people(session: Session, context: AccountContext, participants: Iterable[Address]) -> PeoplePlan:
    plan = PeoplePlan()
    wanted: dict[str, Address] = {}
    for address in participants:
        canonical = context.canonical(address.address)
        if context.is_internal(canonical):
            continue
        wanted.setdefault(canonical, address)
    known = _known(session, context.account_id, list(wanted))
    for canonical, address in wanted.items():
        if canonical in known:
            person_id, deleted = known[canonical]
            if deleted:
                plan.skipped[canonical] = "the person with this address was deleted"
            else:
                plan.found[canonical] = person_id
        elif _blocked(context, canonical):
            plan.skipped[canonical] = "on the account's blocklist"
        elif is_role_address(canonical):
            plan.skipped[canonical] = "a role or no-reply address"
        else:
            plan.missing[canonical] = address
    return plan


def create_missing(
    session: Session,
    context: AccountContext,
    plan: PeoplePlan,
    *,
    rule: PersonRule,
    message_id: uuid.UUID,
    organizations: Mapping[str, uuid.UUID],
) -> dict[str, uuid.UUID]:
    """Create the planned persons, each in the organization owning its domain (`organizations`, by address);
    another worker creating the same one concurrently wins nothing twice."""
    created: dict[str, uuid.UUID] = {}
    if not plan.missing:
        return created
    lock_names(session, context.account_id, (f"person-address:{a}" for a in plan.missing))
    # Under the locks, whoever held them may have created some of these meanwhile: the batch looked again once it
    # held them all (`prefetch_people`), and remembers what it created since; anything else is asked now.
    known = _known(session, context.account_id, list(plan.missing))
    for canonical, address in sorted(plan.missing.items()):
        if canonical in known:
            person_id, deleted = known[canonical]
            if not deleted:
                plan.found[canonical] = person_id
            continue
        # Inserted with the batch's next statement (see placement.rows); the address's lock keeps others off it.
        person_id = uuid.uuid4()
        organization_id = organizations.get(canonical)
        insert_later(
            session,
            PERSONS,
            [
                {
                    "id": person_id,
                    "account_id": context.account_id,
                    "name": display_name(address),
                    "organization_id": organization_id,
                    "organization_rule": None if organization_id is None else OrganizationRule.owns_email_domain,
                    "created_from": CreatedFrom.email,
                    "created_by_rule": rule,
                    "created_by_message_id": message_id,
                }
            ],
        )
        if organization_id is not None:
            note_organization(session, person_id)
        insert_later(
            session,
            PERSON_EMAILS,
            [{"id": uuid.uuid4(), "account_id": context.account_id, "person_id": person_id, "address": canonical}],
        )
        plan.found[canonical] = person_id
        created[canonical] = person_id
        _remember(session, context.account_id, canonical, person_id)
    plan.missing.clear()
    return created


# What a batch looked up once for all its messages: (account, address) → (person, deleted), or None for "none then".
_PREFETCHED = "mailroom.known_people"


def prefetch_people(session: Session, wanted: dict[uuid.UUID, set[str]]) -> dict[uuid.UUID, set[str]]:
    """Look up the persons of every address a batch mentions, per account, and remember the answers for this
    transaction; returns the addresses that have no person yet (the ones a message may create)."""
    cache: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, bool] | None] = session.info.setdefault(_PREFETCHED, {})
    missing: dict[uuid.UUID, set[str]] = {}
    for account_id, addresses in wanted.items():
        known = _query_known(session, account_id, sorted(addresses))
        for address in addresses:
            cache[(account_id, address)] = known.get(address)
        missing[account_id] = addresses - set(known)
    return missing


def _known(session: Session, account_id: uuid.UUID, addresses: list[str]) -> dict[str, tuple[uuid.UUID, bool]]:
    cache: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, bool] | None] = session.info.get(_PREFETCHED, {})
    known: dict[str, tuple[uuid.UUID, bool]] = {}
    ask: list[str] = []
    for address in addresses:
        key = (account_id, address)
        if key not in cache:
            ask.append(address)
        elif (found := cache[key]) is not None:
            known[address] = found
    known.update(_query_known(session, account_id, ask))
    return known


def _remember(session: Session, account_id: uuid.UUID, address: str, person_id: uuid.UUID) -> None:
    """Created in this transaction (which, if it rolls back, takes the cache with its session)."""
    cache: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, bool] | None] = session.info.setdefault(_PREFETCHED, {})
    cache[(account_id, address)] = (person_id, False)


# Fixed text, like every statement a batch runs once or more: building and caching an ORM select cost more
# than running it (0.5 against 0.2 ms).
_KNOWN = DirectSql(
    "SELECT person_emails.address, person_emails.person_id, persons.deleted_at IS NOT NULL AS deleted,"
    " persons.organization_id IS NOT NULL AS has_organization"
    " FROM person_emails JOIN persons ON persons.id = person_emails.person_id"
    " WHERE person_emails.account_id = :account_id AND person_emails.address = ANY(CAST(:addresses AS text[]))"
)


def _query_known(session: Session, account_id: uuid.UUID, addresses: list[str]) -> dict[str, tuple[uuid.UUID, bool]]:
    if not addresses:
        return {}
    rows = execute_direct(session, _KNOWN, {"account_id": account_id, "addresses": addresses}).fetchall()
    with_organization: set[uuid.UUID] = session.info.setdefault(_WITH_ORGANIZATION, set())
    with_organization.update(row.person_id for row in rows if row.has_organization)
    return {row.address: (row.person_id, row.deleted) for row in rows}


# Persons the transaction knows to belong to an organization already (looked up with them, or given one since):
# linking them again would be a statement per person per message that changes nothing.
_WITH_ORGANIZATION = "mailroom.persons_with_organization"


def has_organization(session: Session, person_id: uuid.UUID) -> bool:
    return person_id in session.info.get(_WITH_ORGANIZATION, ())


def note_organization(session: Session, person_id: uuid.UUID) -> None:
    session.info.setdefault(_WITH_ORGANIZATION, set()).add(person_id)


def _blocked(context: AccountContext, address: str) -> bool:
    entries = {entry.strip().lower().lstrip("@") for entry in context.settings.blocklist}
    return address in entries or domain_of(address) in entries
