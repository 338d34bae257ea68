"""Put a raw message where the gateway puts it, for tests and evaluations that drive the matcher directly."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session, sessionmaker

from shared.db import transaction
from shared.models import InboundMessage, InboundStatus


def store_inbound(
    sessions: sessionmaker[Session],
    *,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    bcc_address: str,
    raw: bytes,
    envelope_from: str = "sender@example.net",
) -> uuid.UUID:
    """The raw bytes and envelope, committed with status `received` — exactly what a `250` stands for."""
    with transaction(sessions) as session:
        inbound = InboundMessage(
            account_id=account_id,
            user_id=user_id,
            envelope_from=envelope_from,
            envelope_to=bcc_address,
            raw=raw,
            size=len(raw),
            status=InboundStatus.received,
            attempts=0,
        )
        session.add(inbound)
        session.flush()
        return inbound.id
