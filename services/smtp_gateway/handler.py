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
from services.smtp_gateway.limits import TOO_MANY_RECIPIENTS, Anvil, client_of
from services.smtp_gateway.store import InboundStore, NewInbound, Recipient
from shared import metrics

log = structlog.get_logger(__name__)

UNKNOWN_MAILBOX = "550 5.1.1 No such Smart-BCC address here"
RELAY_DENIED = "550 5.7.1 This server only accepts mail for its Smart-BCC addresses"
TRY_LATER = "451 4.3.0 Temporary failure, please try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down, please try again later"
# A reply names this many inbound ids at most: a message to a thousand recipients still gets a one-line `250`.
_IDS_IN_REPLY = 3


class GatewayHandler:
    def __init__(self, bcc_domain: str, store: InboundStore, enqueuer: AfterCommitEnqueuer, anvil: Anvil) -> None:
        self._bcc_domain = bcc_domain.lower()
        self._store = store
        self._enqueuer = enqueuer
        self._anvil = anvil
        # Accepted recipients of each open transaction, by user: one copy of a message per mailbox.
        self._recipients: weakref.WeakKeyDictionary[Envelope, dict[uuid.UUID, Recipient]] = weakref.WeakKeyDictionary()
        # Envelopes between MAIL and the end of DATA; a reset or closed session drops its envelope, and with it the
        # entry. Shutdown waits for this set to empty before it closes sessions.
        self.open_transactions: weakref.WeakSet[Envelope] = weakref.WeakSet()
        self.draining = False

    async def handle_MAIL(  # noqa: N802 -- aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.draining:
            return SHUTTING_DOWN
        too_much = self._anvil.admit_message(client_of(session.peer))
        if too_much is not None:
            return too_much
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self.open_transactions.add(envelope)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802 -- aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        accepted = self._recipients.setdefault(envelope, {})
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
        if recipient.user_id in accepted:
            # The same mailbox again, under any of its addresses, gets the message once (tagged by the first):
            # a copy per sub-address would let one message be stored a thousand times over.
            return "250 2.1.5 OK"
        max_recipients = self._anvil.limits.max_recipients
        if max_recipients and len(accepted) >= max_recipients:
            return TOO_MANY_RECIPIENTS  # RFC 5321 4.5.3.1.10: the client sends the rest in another transaction
        envelope.rcpt_tos.append(address)
        accepted[recipient.user_id] = recipient
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802 -- aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        recipients = list(self._recipients.pop(envelope, {}).values())
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
        metrics.messages_accepted(len(ids))
        self._enqueuer.submit(ids)
        return f"250 2.0.0 queued as {_queued_as(ids)}"


def _queued_as(ids: list[uuid.UUID]) -> str:
    named = ",".join(str(inbound_id) for inbound_id in ids[:_IDS_IN_REPLY])
    more = len(ids) - _IDS_IN_REPLY
    return f"{named} and {more} more" if more > 0 else named


def _peer(peer: Any) -> str | None:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return None if peer is None else str(peer)
