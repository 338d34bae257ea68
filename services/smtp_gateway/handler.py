"""The SMTP conversation: cheap, specific answers at RCPT; at DATA, commit the raw bytes, then say `250`.

Nothing is parsed or matched while the session is open (the matcher does that, and re-checks everything).
Any failure before the commit answers 4xx, so the sending server keeps the message and retries.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from services.smtp_gateway.enqueue import AfterCommitEnqueuer
from services.smtp_gateway.store import InboundStore, NewInbound, Recipient

log = structlog.get_logger(__name__)

UNKNOWN_MAILBOX = "550 5.1.1 No such Smart-BCC address here"
RELAY_DENIED = "550 5.7.1 This server only accepts mail for its Smart-BCC addresses"
TRY_LATER = "451 4.3.0 Temporary failure, please try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, please try again later"


class GatewayHandler:
    def __init__(self, bcc_domain: str, store: InboundStore, enqueuer: AfterCommitEnqueuer) -> None:
        self._bcc_domain = bcc_domain.lower()
        self._store = store
        self._enqueuer = enqueuer
        self._recipients: weakref.WeakKeyDictionary[Envelope, list[Recipient]] = weakref.WeakKeyDictionary()
        # Envelopes between MAIL and the end of DATA; a reset or closed session drops its envelope, and with it the
        # entry. Shutdown waits for this set to empty before it closes sessions.
        self.open_transactions: weakref.WeakSet[Envelope] = weakref.WeakSet()
        self.draining = False

    async def handle_MAIL(  # noqa: N802 -- aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.draining:
            return SHUTTING_DOWN
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self.open_transactions.add(envelope)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802 -- aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        local_part, _, domain = address.rpartition("@")
        if domain.lower() != self._bcc_domain or not local_part:
            return RELAY_DENIED
        # A sub-address (`token+deal-42@…`) reaches the same user; the matcher reads the tag.
        token = local_part.split("+", 1)[0].lower()
        try:
            recipient = await self._store.find_recipient(token, address)
        except Exception:
            log.exception("smtp.rcpt_lookup_failed")
            return TRY_LATER
        if recipient is None:
            return UNKNOWN_MAILBOX
        envelope.rcpt_tos.append(address)
        self._recipients.setdefault(envelope, []).append(recipient)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 -- aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        recipients = self._recipients.pop(envelope, [])
        raw = envelope.original_content
        if not recipients or not isinstance(raw, bytes):
            return "554 5.5.1 No valid recipients"
        peer = _peer(session.peer)
        try:
            ids = await self._store.persist(
                [
                    NewInbound(recipient, envelope.mail_from or "", peer, raw, helo=session.host_name)
                    for recipient in recipients
                ]
            )
        except Exception:
            log.exception("smtp.persist_failed", size=len(raw))
            return TRY_LATER
        finally:
            self.open_transactions.discard(envelope)
        self._enqueuer.submit(ids)
        return f"250 2.0.0 queued as {_queued_as(ids)}"


def _queued_as(ids: list[uuid.UUID]) -> str:
    return ",".join(str(inbound_id) for inbound_id in ids)


def _peer(peer: Any) -> str | None:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return None if peer is None else str(peer)
