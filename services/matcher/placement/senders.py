"""May this mail act as the sender it names? A user's own mail, and a bounce that marks an address undeliverable.

Mail whose From is a user's address or verified alias is what creates people, links deals and joins threads in
the user's name, so it must prove it comes from that domain: SPF or DKIM passing for a domain aligned with From
(DMARC's rule). Otherwise it is held before anything is placed, with a reason a person can act on; a held
message changes no thread, so forged References cannot merge anything.

A bounce marks a person's address as bouncing only when the bounce authenticates for its own domain, or when it
is about mail this user sent (it references one of the user's sent messages, and the address was a recipient).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.matcher.authentication import SenderAuthentication, domain_of
from services.matcher.mail.analysis import Analysis
from services.matcher.placement.account import AccountContext, AccountUser
from shared.addresses import normalize_address
from shared.models import Direction, Message


def unauthenticated_claim(
    context: AccountContext,
    user: AccountUser,
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
    analysis: Analysis,
    authentication: SenderAuthentication | None,
) -> list[str]:
    """The failed addresses of a delivery report that may be marked as bouncing (see the module's docstring).

    Without an authentication record (verification switched off) every reported address counts, as before.
    """
    failed = list(analysis.bounced_recipients)
    if not failed or authentication is None:
        return failed
    # SPF of a bounce is its HELO name's: mx.example for example.com
    if authentication.authenticates(authentication.from_domain):
        return failed
    recipients = _recipients_of_sent_mail(session, context, user_id, set(analysis.bounce_references))
    return [address for address in failed if normalize_address(address) in recipients]


def _recipients_of_sent_mail(
    session: Session, context: AccountContext, user_id: uuid.UUID, message_ids: set[str]
) -> set[str]:
    if not message_ids:
        return set()
    rows = session.execute(
        select(Message.to, Message.cc).where(
            Message.account_id == context.account_id,
            Message.user_id == user_id,
            Message.direction == Direction.outbound,
            Message.message_id_header.in_(message_ids),
        )
    ).all()
    return {
        normalize_address(str(entry["address"]))
        for to, cc in rows
        for entry in (*to, *cc)
        if isinstance(entry, dict) and entry.get("address")
    }
