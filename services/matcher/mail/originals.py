"""A forwarded reply's original message(s): attached as message/rfc822, or quoted inline by the mail client.

The original is what the salesperson wants on the deal: who really wrote it, to whom, when, what. An attached
original keeps its own Message-ID and references (so it threads exactly); an inline one gets a stable id from
its content, so the same forward processed twice — or forwarded by two colleagues — is stored once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from services.matcher.mail.forwards import ForwardedAddress, parse_forwarded
from services.matcher.mail.parsing import Address, ParsedMail, parse_mail
from services.matcher.mail.quotes import html_to_text

# Below this the forward parser is guessing; better to keep the forward itself than to invent an author.
MIN_FORWARD_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Original:
    mail: ParsedMail
    confidence: float
    how: str  # "attached" or "inline", for the provenance shown to users


def body_text(mail: ParsedMail) -> str:
    """The body as plain text: the text part, else the HTML part made text; "" when there is neither."""
    return mail.text_body or (html_to_text(mail.html_body) if mail.html_body else "")


def find_originals(forward: ParsedMail, text: str | None = None) -> list[Original]:
    """`text` is the forward's `body_text`, when the caller has it already (HTML to text is not cheap)."""
    attached = [a for a in forward.attachments if a.content_type == "message/rfc822" and a.content]
    if attached:
        return [Original(parse_mail(a.content), 1.0, "attached") for a in attached]
    if text is None:
        text = body_text(forward)
    if not text:
        return []
    result = parse_forwarded(text, forward.subject)
    email = result.email
    if not result.forwarded or email is None or result.confidence < MIN_FORWARD_CONFIDENCE:
        return []
    sender = _address(email.from_)
    if sender is None:
        return []
    body = email.body or ""
    recipients = sorted((a.address or "").lower() for a in (*email.to, *email.cc))
    identity = "\n".join(
        [sender.address.lower(), email.date or "", email.subject or "", ",".join(recipients), body.strip()[:4000]]
    )
    original = ParsedMail(
        message_id=f"fwd-{hashlib.sha256(identity.encode()).hexdigest()[:40]}@mailroom.invalid",
        in_reply_to=None,
        references=(),
        subject=email.subject or _strip_forward_prefix(forward.subject),
        sender=sender,
        to=tuple(a for a in (_address(x) for x in email.to) if a is not None),
        cc=tuple(a for a in (_address(x) for x in email.cc) if a is not None),
        # Clients print the date localized ("lundi 3 mars 2025 à 10:12"); when it does not parse, the forward's
        # own date is the closest honest value.
        sent_at=_parse_date(email.date) or forward.sent_at,
        text_body=body or None,
        html_body=None,
        # Files on a forward are the original's files.
        attachments=forward.attachments,
        headers={},
        defects=forward.defects,
    )
    return [Original(original, result.confidence, "inline")]


def with_forward_defaults(original: Original, forward: ParsedMail) -> ParsedMail:
    """An attached original without a date takes the forward's, so it sorts near the truth."""
    mail = original.mail
    return mail if mail.sent_at is not None else replace(mail, sent_at=forward.sent_at)


def _address(value: ForwardedAddress | None) -> Address | None:
    if value is None or not value.address or "@" not in value.address:
        return None
    return Address(name=(value.name or "").strip() or None, address=value.address.strip())


def _parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _strip_forward_prefix(subject: str | None) -> str | None:
    if subject is None:
        return None
    head, sep, rest = subject.partition(":")
    return rest.strip() if sep and len(head) <= 4 else subject
