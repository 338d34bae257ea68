"""The Smart-BCC sub-address of a deal or lead, as a client shows it: mail BCC'd there lands on the record."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.deps import Caller
from shared.directory import tagged_bcc_address
from shared.models import User


def record_addresses(
    session: Session,
    caller: Caller,
    bcc_domain: str,
    kind: str,
    records: Iterable[tuple[uuid.UUID, uuid.UUID | None]],
) -> dict[uuid.UUID, str | None]:
    """`{record id: address}` for (record id, owner user id) pairs: the caller's own Smart-BCC address if the token
    acts for a user, else the owner's; None when there is neither, or when the caller may not read the owner's
    address (like the plain Smart-BCC address, it lets anyone put mail into that user's CRM)."""
    pairs = list(records)
    users = {caller.user_id} if caller.user_id is not None else {owner for _, owner in pairs if owner is not None}
    local_parts = dict(
        session.execute(
            select(User.id, User.bcc_local_part).where(User.account_id == caller.account_id, User.id.in_(users))
        )
        .tuples()
        .all()
    )
    addresses: dict[uuid.UUID, str | None] = {}
    for record_id, owner in pairs:
        user_id = caller.user_id or owner
        visible = user_id is not None and caller.sees_bcc_address_of(user_id)
        local_part = local_parts.get(user_id) if visible and user_id is not None else None
        addresses[record_id] = (
            None if local_part is None else tagged_bcc_address(local_part, bcc_domain, f"{kind}-{record_id}")
        )
    return addresses
