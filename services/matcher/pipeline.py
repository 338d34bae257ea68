"""One inbound message, top to bottom: load → parse → thread → store → people → deal. One transaction.

The inbound row is locked for the whole run and marked processed in the same commit as everything it produced,
so a crash anywhere leaves it `received` for a retry, and a second run finds it done and changes nothing.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.deals import link_thread_to_deal
from services.matcher.parsing import Address, ParsedMail, parse_mail
from services.matcher.people import RULE_RECIPIENT_OF_SENT_MAIL, find_or_create_persons, find_persons
from services.matcher.threads import assign_thread
from shared.addresses import normalize_address
from shared.blobstore import BlobStore
from shared.db import transaction
from shared.locks import lock_names
from shared.models import (
    Attachment,
    Direction,
    InboundMessage,
    InboundStatus,
    Message,
    MessagePerson,
    Thread,
    User,
)

log = structlog.get_logger(__name__)


class Outcome(enum.StrEnum):
    stored = "stored"
    duplicate = "duplicate"  # the same Message-ID was already stored (re-sent or BCC'd twice)
    already_done = "already_done"
    busy = "busy"  # another worker holds it right now
    missing = "missing"


@dataclass(frozen=True)
class Matcher:
    sessions: sessionmaker[Session]
    blobs: BlobStore

    def process(self, inbound_id: uuid.UUID) -> Outcome:
        with transaction(self.sessions) as session:
            inbound = session.scalars(
                select(InboundMessage).where(InboundMessage.id == inbound_id).with_for_update(skip_locked=True)
            ).one_or_none()
            if inbound is None:
                exists = session.get(InboundMessage, inbound_id) is not None
                return Outcome.busy if exists else Outcome.missing
            if inbound.status != InboundStatus.received:
                return Outcome.already_done
            parsed = parse_mail(inbound.raw)
            message, outcome = self._store(session, inbound, parsed)
            inbound.status = InboundStatus.processed.value
            inbound.message_id = message.id
            inbound.processed_at = datetime.now(UTC)
            inbound.last_error = None
            log.info("matcher.processed", outcome=outcome.value, message_id=str(message.id))
            return outcome

    def _store(self, session: Session, inbound: InboundMessage, parsed: ParsedMail) -> tuple[Message, Outcome]:
        account_id = inbound.account_id
        # Everything that shares an id with this message waits for us (and we for it): see shared.locks.
        lock_names(session, account_id, (f"thread-key:{key}" for key in {parsed.message_id, *parsed.references}))
        existing = session.scalars(
            select(Message).where(Message.account_id == account_id, Message.message_id_header == parsed.message_id)
        ).one_or_none()
        if existing is not None:
            return existing, Outcome.duplicate

        own_addresses = set(session.scalars(select(User.email).where(User.account_id == account_id)).all())
        sender = parsed.sender
        outbound = sender is not None and normalize_address(sender.address) in own_addresses
        roles = _external_roles(parsed, own_addresses)
        thread_id = assign_thread(
            session,
            account_id,
            message_id=parsed.message_id,
            references=parsed.references,
            subject=parsed.subject,
            sent_at=parsed.sent_at,
            participants=frozenset(normalize_address(a.address) for _, a in roles),
        )
        message = Message(
            account_id=account_id,
            user_id=inbound.user_id,
            thread_id=thread_id,
            message_id_header=parsed.message_id,
            in_reply_to=parsed.in_reply_to,
            references=list(parsed.references),
            subject=parsed.subject,
            from_name=sender.name if sender else None,
            from_address=sender.address if sender else None,
            to=[a.as_json() for a in parsed.to],
            cc=[a.as_json() for a in parsed.cc],
            sent_at=parsed.sent_at,
            direction=(Direction.outbound if outbound else Direction.inbound).value,
            text_body=parsed.text_body,
            html_body=parsed.html_body,
            defects=list(parsed.defects),
        )
        session.add(message)
        session.flush()
        for attachment in parsed.attachments:
            session.add(
                Attachment(
                    account_id=account_id,
                    message_id=message.id,
                    filename=attachment.filename,
                    content_type=attachment.content_type,
                    content_id=attachment.content_id,
                    size=len(attachment.content),
                    sha256=self.blobs.put(account_id, attachment.content),
                )
            )

        if outbound:
            recipients = [address for role, address in roles if role != "from"]
            persons = find_or_create_persons(
                session, account_id, recipients, rule=RULE_RECIPIENT_OF_SENT_MAIL, message_id=message.id
            )
        else:
            persons = find_persons(session, account_id, [normalize_address(a.address) for _, a in roles])
        linked: set[tuple[uuid.UUID, str]] = set()
        for role, address in roles:
            person_id = persons.get(normalize_address(address.address))
            if person_id is not None and (person_id, role) not in linked:
                linked.add((person_id, role))
                session.add(MessagePerson(account_id=account_id, message_id=message.id, person_id=person_id, role=role))
        link_thread_to_deal(session, account_id, thread_id, {person_id for person_id, _ in linked})
        _touch_thread(session, thread_id, parsed.sent_at)
        return message, Outcome.stored


def _external_roles(parsed: ParsedMail, own_addresses: set[str]) -> list[tuple[str, Address]]:
    roles: list[tuple[str, Address]] = []
    if parsed.sender is not None:
        roles.append(("from", parsed.sender))
    roles.extend(("to", address) for address in parsed.to)
    roles.extend(("cc", address) for address in parsed.cc)
    return [(role, a) for role, a in roles if normalize_address(a.address) not in own_addresses]


def _touch_thread(session: Session, thread_id: uuid.UUID, sent_at: datetime | None) -> None:
    thread = session.get_one(Thread, thread_id)
    if sent_at is not None and (thread.last_message_at is None or sent_at > thread.last_message_at):
        thread.last_message_at = sent_at
