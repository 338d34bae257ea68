"""Raw bytes → `ParsedMail`: what the rest of the matcher needs, read with mail-parser.

mail-parser decodes headers (RFC 2047), bodies and charsets; attachment bytes are taken from the MIME tree
directly so that a download returns exactly what was sent. Nothing here raises on bad input: what cannot be read
cleanly becomes an entry in `defects`.
"""

from __future__ import annotations

import email.message
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses

import mailparser

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


@dataclass(frozen=True)
class Address:
    name: str | None
    address: str

    def as_json(self) -> dict[str, str | None]:
        return {"name": self.name, "address": self.address}


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str | None
    content_type: str
    content_id: str | None
    content: bytes


@dataclass(frozen=True)
class ParsedMail:
    message_id: str  # normalized, without angle brackets; a hash of the bytes when the header is missing
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str | None
    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    sent_at: datetime | None
    text_body: str | None
    html_body: str | None
    attachments: tuple[ParsedAttachment, ...]
    headers: dict[str, str] = field(default_factory=dict)
    defects: tuple[str, ...] = ()


def parse_mail(raw: bytes) -> ParsedMail:
    parsed = mailparser.parse_from_bytes(raw)
    message: email.message.Message = parsed.message
    defects = [str(defect) for defect in _all_defects(message)]
    own_id = _first_message_id(_header(message, "Message-ID"))
    references = tuple(_unique(_MESSAGE_ID.findall(_header(message, "References") or "")))
    in_reply_to = _first_message_id(_header(message, "In-Reply-To"))
    if in_reply_to is not None and in_reply_to not in references:
        references = (*references, in_reply_to)
    return ParsedMail(
        message_id=own_id or "sha256-" + hashlib.sha256(raw).hexdigest() + "@mailroom.invalid",
        in_reply_to=in_reply_to,
        references=tuple(ref for ref in references if ref != own_id),
        subject=_clean(parsed.subject),
        sender=_first(_addresses(parsed.from_)),
        to=_addresses(parsed.to),
        cc=_addresses(parsed.cc),
        sent_at=_sent_at(parsed.date),
        text_body=_joined(parsed.text_plain),
        html_body=_joined(parsed.text_html),
        attachments=tuple(_attachments(message)),
        headers={name.lower(): str(value) for name, value in message.items()},
        defects=tuple(defects),
    )


def normalize_message_id(value: str) -> str | None:
    return _first_message_id(value)


def _first_message_id(value: str | None) -> str | None:
    if not value:
        return None
    found = _MESSAGE_ID.search(value)
    if found is not None:
        return found.group(1)
    # Some clients omit the angle brackets; accept a bare token that looks like an id.
    bare = value.strip()
    return bare if bare and " " not in bare else None


def _header(message: email.message.Message, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)


def _addresses(pairs: list[tuple[str, str]] | None) -> tuple[Address, ...]:
    result: list[Address] = []
    seen: set[str] = set()
    for name, address in pairs or []:
        address = address.strip().strip("<>").strip()
        if "@" not in address or address.lower() in seen:
            continue
        seen.add(address.lower())
        result.append(Address(name=_clean(name) or None, address=address))
    return tuple(result)


def parse_address_header(value: str) -> tuple[Address, ...]:
    return _addresses(getaddresses([value]))


def _first(addresses: tuple[Address, ...]) -> Address | None:
    return addresses[0] if addresses else None


def _sent_at(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _joined(parts: list[str] | None) -> str | None:
    text = "\n".join(part for part in parts or [] if part)
    return text.replace("\r\n", "\n").replace("\r", "\n") or None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _all_defects(message: email.message.Message) -> list[object]:
    defects: list[object] = []
    for part in message.walk():
        defects.extend(getattr(part, "defects", []))
    return defects


def _attachments(message: email.message.Message) -> list[ParsedAttachment]:
    found: list[ParsedAttachment] = []
    _collect_attachments(message, found)
    return found


def _collect_attachments(part: email.message.Message, found: list[ParsedAttachment]) -> None:
    content_type = part.get_content_type()
    if content_type == "message/rfc822":
        # An attached message is one file (its exact bytes), not a tree to dig into.
        inner = part.get_payload()
        body: object = part.get_payload(decode=True)
        if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
            body = inner[0].as_bytes()
        found.append(
            ParsedAttachment(
                filename=part.get_filename() or "message.eml",
                content_type=content_type,
                content_id=_content_id(part),
                content=body if isinstance(body, bytes) else b"",
            )
        )
        return
    if part.is_multipart():
        for child in part.get_payload():
            if isinstance(child, email.message.Message):
                _collect_attachments(child, found)
        return
    disposition = part.get_content_disposition()
    filename = part.get_filename()
    is_body = part.get_content_maintype() == "text" and disposition != "attachment" and filename is None
    if is_body:
        return
    payload = part.get_payload(decode=True)
    found.append(
        ParsedAttachment(
            filename=filename,
            content_type=content_type,
            content_id=_content_id(part),
            content=payload if isinstance(payload, bytes) else b"",
        )
    )


def _content_id(part: email.message.Message) -> str | None:
    value = part.get("Content-ID")
    return _first_message_id(str(value)) if value else None
