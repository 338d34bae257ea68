"""Persons belong to the organization that owns their e-mail domain; work domains may create one."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.matcher.placement.account import AccountContext, domain_of, free_mail_domains
from services.matcher.placement.people import has_organization, note_organization
from shared.db import DirectSql, execute_direct
from shared.locks import lock_names
from shared.models import CreatedFrom, Organization, OrganizationDomain, OrganizationRule, Person

RULE_OWNS_EMAIL_DOMAIN = OrganizationRule.owns_email_domain
RULE_WORK_DOMAIN = OrganizationRule.work_domain_of_participant
# Owners of domains a batch looked up once, (account, domain) → organization or None; only organizations that
# existed before the transaction, so a savepoint that rolls back a new one cannot leave a stale entry behind (a
# domain that gets one within the batch is found again by the locked re-read that creating one does).
_OWNERS = "mailroom.domain_owners"


def organization_name(domain: str) -> str:
    """acme-industries.co.uk → "Acme Industries": the registrable label, made readable."""
    labels = domain.split(".")
    second_level = {"co", "com", "org", "net", "ac", "gov", "edu", "ltd", "plc"}
    core = labels[-3] if len(labels) >= 3 and labels[-2] in second_level else labels[-2] if len(labels) >= 2 else domain
    return " ".join(word.capitalize() for word in core.replace("_", "-").split("-") if word) or domain


def domain_owners(
    session: Session, context: AccountContext, addresses: Iterable[str], *, message_id: uuid.UUID
) -> dict[str, uuid.UUID]:
    """The organization owning each address's domain, where one does; a work domain without one gets one when
    the account says so (created by this message). Free-mail and the account's own domains have none."""
    domains = {address: domain_of(address) for address in addresses}
    candidates = {d for d in domains.values() if d not in free_mail_domains() and d not in context.internal_domains}
    if not candidates:
        return {}
    owners = _owners(session, context.account_id, candidates)
    missing = sorted(candidates - set(owners))
    if missing and context.settings.create_organizations:
        lock_names(session, context.account_id, (f"organization-domain:{d}" for d in missing))
        owners.update(_query_owners(session, context.account_id, set(missing)))
        for domain in missing:
            if domain in owners:
                continue
            organization = Organization(
                account_id=context.account_id,
                name=organization_name(domain),
                created_from=CreatedFrom.email,
                created_by_rule=RULE_WORK_DOMAIN,
                created_by_message_id=message_id,
            )
            session.add(organization)
            session.flush()
            session.execute(
                insert(OrganizationDomain).values(
                    account_id=context.account_id, organization_id=organization.id, domain=domain
                )
            )
            owners[domain] = organization.id
    return {address: owners[domain] for address, domain in domains.items() if domain in owners}


def link_organizations(
    session: Session, context: AccountContext, persons: dict[str, uuid.UUID], owners: Mapping[str, uuid.UUID]
) -> None:
    """Give each person without an organization the one owning its address's domain (`domain_owners`)."""
    for address, person_id in persons.items():
        organization_id = owners.get(address)
        if organization_id is None or has_organization(session, person_id):
            continue  # none to give, or linked already (to this one or to another a user chose)
        session.execute(
            update(Person)
            .where(Person.id == person_id, Person.account_id == context.account_id, Person.organization_id.is_(None))
            .values(organization_id=organization_id, organization_rule=RULE_OWNS_EMAIL_DOMAIN)
        )
        note_organization(session, person_id)


def unowned_domains(session: Session, context: AccountContext, addresses: Iterable[str]) -> set[str]:
    """The domains of these addresses that could get an organization and have none yet (what a batch may lock)."""
    domains = {domain_of(a) for a in addresses}
    candidates = {d for d in domains if d not in free_mail_domains() and d not in context.internal_domains}
    if not candidates:
        return set()
    owners = _owners(session, context.account_id, candidates)
    # Remembered for this transaction: the messages of the batch find their organizations without a query.
    cache: dict[tuple[uuid.UUID, str], uuid.UUID | None] = session.info.setdefault(_OWNERS, {})
    cache.update(((context.account_id, domain), owners.get(domain)) for domain in candidates)
    if not context.settings.create_organizations:
        return set()
    return candidates - set(owners)


def _owners(session: Session, account_id: uuid.UUID, domains: set[str]) -> dict[str, uuid.UUID]:
    cache: dict[tuple[uuid.UUID, str], uuid.UUID | None] = session.info.get(_OWNERS, {})
    owners: dict[str, uuid.UUID] = {}
    ask: set[str] = set()
    for domain in domains:
        if (account_id, domain) not in cache:
            ask.add(domain)
        elif (owner := cache[(account_id, domain)]) is not None:
            owners[domain] = owner
    if ask:
        owners.update(_query_owners(session, account_id, ask))
    return owners


# Fixed text: it runs for every batch, and building an ORM select cost more than running it.
_OWNERS_OF = DirectSql(
    "SELECT organization_domains.domain, organization_domains.organization_id FROM organization_domains"
    " JOIN organizations ON organizations.id = organization_domains.organization_id"
    " WHERE organization_domains.account_id = :account_id"
    " AND organization_domains.domain = ANY(CAST(:domains AS text[])) AND organizations.deleted_at IS NULL"
)


def _query_owners(session: Session, account_id: uuid.UUID, domains: set[str]) -> dict[str, uuid.UUID]:
    rows = execute_direct(session, _OWNERS_OF, {"account_id": account_id, "domains": sorted(domains)})
    return {row.domain: row.organization_id for row in rows}
