"""Verifying an alias by mail: a secret link goes to the address; whoever reads that mailbox confirms it.

Only the secret's SHA-256 is stored, so a database dump cannot confirm anything. The link opens a page with a
button (a POST): mail scanners and link previews fetch links, and must not confirm an address by doing so.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from shared.models import User, UserAlias
from shared.settings import Settings


def new_token() -> tuple[str, str]:
    """(the secret for the link, its hash for the database)."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def confirmation_url(settings: Settings, token: str) -> str:
    return f"{settings.api_base_url}/alias-confirmations/{token}"


def expired(settings: Settings, alias: UserAlias, now: datetime | None = None) -> bool:
    if alias.confirmation_sent_at is None:
        return True
    now = now or datetime.now(UTC)
    return now - alias.confirmation_sent_at > timedelta(hours=settings.alias_confirmation_hours)


def confirmation_mail(settings: Settings, user: User, alias: UserAlias, token: str) -> EmailMessage:
    url = confirmation_url(settings, token)
    who = f"{user.name} <{user.email}>" if user.name else user.email
    mail = EmailMessage()
    mail["From"] = settings.mail_from
    mail["To"] = alias.address
    mail["Subject"] = f"Confirm {alias.address} as a sender address in Mailroom"
    mail["Message-ID"] = make_msgid(domain=settings.smtp_hostname)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this, please
    hours = int(settings.alias_confirmation_hours)
    mail.set_content(
        f"{who} asked Mailroom to treat mail from {alias.address} as their own, so that the mail they send from"
        f" this address is filed in the CRM.\n\n"
        f"If that is right, open this link and confirm (within {hours} hours):\n\n    {url}\n\n"
        "If you did not expect this, ignore this mail: nothing changes without the confirmation.\n"
    )
    return mail
