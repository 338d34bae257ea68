"""Find the Person behind each external address of a message, creating the missing ones (race-safe)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from services.matcher.parsing import Address
from shared.addresses import normalize_address
from shared.locks import lock_names
from shared.models import Person, PersonEmail

RULE_RECIPIENT_OF_SENT_MAIL = "recipient-of-sent-mail"


def display_name(address: Address) -> str:
    """The name to show for a new person: the display name, else something readable from the local part."""
    if address.name and address.name.strip().strip("'\"") and "@" not in address.name:
        name = address.name.strip().strip("'\"")
        if name.count(",") == 1:  # "Last, First"
            last, first = (part.strip() for part in name.split(","))
            if last and first:
                return f"{first} {last}"
        return name
    local = address.address.split("@", 1)[0]
    words = [word for word in local.replace("_", ".").replace("-", ".").split(".") if word]
    return " ".join(word.capitalize() for word in words) or address.address


def find_persons(session: Session, account_id: uuid.UUID, addresses: list[str]) -> dict[str, uuid.UUID]:
    if not addresses:
        return {}
    rows = session.execute(
        select(PersonEmail.address, PersonEmail.person_id).where(
            PersonEmail.account_id == account_id, PersonEmail.address.in_(addresses)
        )
    ).all()
    return {row.address: row.person_id for row in rows}


def find_or_create_persons(
    session: Session,
    account_id: uuid.UUID,
    addresses: list[Address],
    *,
    rule: str,
    message_id: uuid.UUID,
) -> dict[str, uuid.UUID]:
    """Map each normalized address to its person, creating persons for the addresses nobody has yet."""
    wanted = {normalize_address(a.address): a for a in addresses}
    found = find_persons(session, account_id, list(wanted))
    missing = sorted(set(wanted) - set(found))
    if not missing:
        return found
    # Another worker may be creating the same person right now: take turns per address, then look again.
    lock_names(session, account_id, (f"person-address:{address}" for address in missing))
    found.update(find_persons(session, account_id, missing))
    for address in missing:
        if address in found:
            continue
        person = Person(
            account_id=account_id,
            name=display_name(wanted[address]),
            created_from="email",
            created_by_rule=rule,
            created_by_message_id=message_id,
        )
        session.add(person)
        session.flush()
        session.execute(insert(PersonEmail).values(account_id=account_id, person_id=person.id, address=address))
        found[address] = person.id
    return found
