"""May this mail act as the sender it names? A user's own mail, and a bounce that marks an address undeliverable.

Mail whose From is a user's address or verified alias is what creates people, links deals and joins threads in
the user's name, so it must prove it comes from that domain: SPF or DKIM passing for a domain aligned with From
(DMARC's rule). Otherwise it is held before anything is placed, with a reason a person can act on; a held
message changes no thread, so forged References cannot merge anything.

A bounce marks a person's address as bouncing only when the bounce authenticates for its own domain, or when it
is about mail this user sent (it references one of the user's sent messages, and the address was a recipient).
"""

from __future__ import annotations

import email
import email.utils
import re
import uuid
from email.message import Message as EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.matcher.authentication import SenderAuthentication, domain_of, from_domain_of
from services.matcher.mail.classify import bounced_recipients
from services.matcher.placement.account import AccountContext
from shared.addresses import normalize_address
from shared.models import Direction, Message, User

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


def unauthenticated_claim(
    context: AccountContext,
    user: User,
    claimed: str,
    authentication: SenderAuthentication | None,
) -> str | None:
    """Why mail From `claimed`, a verified address of `user`, may not count as the user's (None: it may): it does
    not authenticate for its domain, and the account does not exempt that domain."""
    domain = domain_of(claimed)
    if domain is None:
        return None
    exempt = {d.lower().lstrip("@") for d in context.settings.unauthenticated_sender_domains}
    if domain in exempt:
        return None
    if authentication is not None and authentication.authenticates(domain):
        return None
    if authentication is not None and authentication.from_domain == domain and authentication.dmarc == "pass":
        return None
    who = user.name or user.email
    checked = authentication.describe() if authentication is not None else "not checked"
    claim = f"From claims {claimed} (a verified address of {who}) but the mail does not authenticate for {domain}"
    if authentication is not None and authentication.had_temporary_error:
        return f"{claim} ({checked}): DNS did not answer, so it is held for now; reprocessing checks again"
    return (
        f"{claim} ({checked}); held as possibly forged. If it is genuine, add {domain} to the account's"
        " unauthenticated_sender_domains and reprocess it"
    )


def trusted_bounce_recipients(
    session: Session,
    context: AccountContext,
    user_id: uuid.UUID,
    raw: bytes,
    authentication: SenderAuthentication | None,
) -> list[str]:
    """The failed addresses of a delivery report that may be marked as bouncing (see the module's docstring).

    Without an authentication record (verification switched off) every reported address counts, as before.
    """
    report = email.message_from_bytes(raw)
    failed = bounced_recipients(report)
    if not failed or authentication is None:
        return failed
    reporter = from_domain_of(report)
    if authentication.authenticates(reporter):  # SPF of a bounce is its HELO name's: mx.example for example.com
        return failed
    recipients = _recipients_of_sent_mail(session, context, user_id, _referenced_ids(report))
    return [address for address in failed if normalize_address(address) in recipients]


def _referenced_ids(report: EmailMessage) -> set[str]:
    """Message-IDs the report is about: its In-Reply-To/References and the returned original's own Message-ID."""
    values = [str(report.get("In-Reply-To", "")), str(report.get("References", ""))]
    for part in report.walk():
        if part.get_content_type() == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                original = email.message_from_bytes(payload)
                values.append(str(original.get("Message-ID", "")))
        elif part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            for message in inner if isinstance(inner, list) else []:
                if isinstance(message, EmailMessage):
                    values.append(str(message.get("Message-ID", "")))
    return {match for value in values for match in _MESSAGE_ID.findall(value)}


def _recipients_of_sent_mail(
    session: Session, context: AccountContext, user_id: uuid.UUID, message_ids: set[str]
) -> set[str]:
    if not message_ids:
        return set()
    rows = session.execute(
        select(Message.to, Message.cc).where(
            Message.account_id == context.account_id,
            Message.user_id == user_id,
            Message.direction == Direction.outbound.value,
            Message.message_id_header.in_(message_ids),
        )
    ).all()
    return {
        normalize_address(str(entry["address"]))
        for to, cc in rows
        for entry in (*to, *cc)
        if isinstance(entry, dict) and entry.get("address")
    }
