"""One inbound message, top to bottom, in one transaction:

    load → parse → classify (sent / forwarded / contact / machine, or held) → for each message to store:
    thread → store → people → organizations → deal

The inbound row is locked for the whole run and marked processed (or held, with the reason) in the same commit
as everything it produced, so a crash anywhere leaves it `received` for a retry, and a second run finds it done
and changes nothing. Processing depends only on the raw bytes and the CRM's current state, so a held message
can be reprocessed once its cause is fixed.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.authentication import SenderAuthConfig, SenderAuthentication, authenticate, client_ip_of
from services.matcher.mail.analysis import AnalysedMail, Analysis
from services.matcher.mail.budget import InProcessAnalyser, MessageAnalyser
from services.matcher.mail.parsing import Address, ParsedMail
from services.matcher.placement.account import AccountContext, load_account
from services.matcher.placement.deals import (
    DealDecision,
    DealOutcome,
    deal_from_subaddress,
    decide_deal,
    lead_from_subaddress,
    link_lead,
)
from services.matcher.placement.organizations import link_organizations
from services.matcher.placement.people import (
    RULE_PARTICIPANT_OF_CONTACT_MAIL,
    RULE_PARTICIPANT_OF_FORWARDED_MAIL,
    RULE_RECIPIENT_OF_SENT_MAIL,
    create_missing,
    plan_people,
)
from services.matcher.placement.senders import trusted_bounce_recipients, unauthenticated_claim
from services.matcher.placement.threads import (
    assign_thread,
    subject_lock_names,
    threads_joined_by_subject,
)
from shared import metrics
from shared.blobstore import BlobStore
from shared.db import transaction
from shared.events import Event, emit
from shared.locks import lock_names
from shared.models import (
    Attachment,
    Direction,
    InboundMessage,
    InboundStatus,
    Message,
    MessageKind,
    MessagePerson,
    PersonEmail,
    ThreadKey,
    User,
)

log = structlog.get_logger(__name__)

RULE_EXISTING_PERSON = "address-of-existing-person"
_CREATING_RULES = {
    MessageKind.sent: RULE_RECIPIENT_OF_SENT_MAIL,
    MessageKind.forwarded: RULE_PARTICIPANT_OF_FORWARDED_MAIL,
    MessageKind.contact: RULE_PARTICIPANT_OF_CONTACT_MAIL,
}


class Outcome(enum.StrEnum):
    stored = "stored"
    duplicate = "duplicate"  # the same Message-ID was already stored (re-sent or BCC'd twice)
    held = "held"
    already_done = "already_done"
    busy = "busy"  # another worker holds it right now
    missing = "missing"


class Hold(Exception):  # noqa: N818 -- a decision, not an error
    """Keep the raw message, place nothing, and tell the user why."""

    def __init__(self, reason: str, *, waiting_for: list[str] | None = None) -> None:
        super().__init__(reason)
        # Message-IDs whose thread, once the user has one, makes this message placeable.
        self.waiting_for = waiting_for


@dataclass(frozen=True)
class Classified:
    kind: MessageKind
    reason: str


@dataclass(frozen=True)
class Provenance:
    forwarded_by: uuid.UUID
    forwarded_at: datetime | None
    confidence: float


def _no_enqueue(_inbound_id: uuid.UUID) -> None:
    """Without a broker (tests, evaluations) released messages wait for the recovery sweep."""


@dataclass(frozen=True)
class Matcher:
    sessions: sessionmaker[Session]
    blobs: BlobStore
    # Called after the commit for each held message this one released (the worker passes its broker's enqueue).
    enqueue: Callable[[uuid.UUID], None] = field(default=_no_enqueue)
    # Sender authentication (SPF/DKIM/DMARC); None checks nothing and lets every verified From count (tests of
    # placement, evaluations). The worker passes what the settings say.
    sender_auth: SenderAuthConfig | None = None
    # The worker analyses under a time and memory budget (`budget.Analyser`); tests may analyse in-process.
    analyser: MessageAnalyser = field(default_factory=InProcessAnalyser)

    def process(self, inbound_id: uuid.UUID) -> Outcome:
        released: list[uuid.UUID] = []
        outcome = self._process(inbound_id, released)
        for held_id in released:
            try:
                self.enqueue(held_id)
            except Exception:
                log.warning("matcher.release_enqueue_failed_left_for_sweep", released_id=str(held_id))
        return outcome

    def _process(self, inbound_id: uuid.UUID, released: list[uuid.UUID]) -> Outcome:
        with transaction(self.sessions) as session:
            inbound = session.scalars(
                select(InboundMessage).where(InboundMessage.id == inbound_id).with_for_update(skip_locked=True)
            ).one_or_none()
            if inbound is None:
                exists = session.get(InboundMessage, inbound_id) is not None
                return Outcome.busy if exists else Outcome.missing
            if inbound.status != InboundStatus.received:
                return Outcome.already_done
            [analysis] = self.analyser.analyse_all([inbound.raw])
            context = load_account(session, inbound.account_id)
            authentication = self._authentication(inbound)
            try:
                # A savepoint: a hold decided halfway (say, at the people cap) leaves nothing half-placed.
                with session.begin_nested():
                    message, outcome = self._place(session, context, inbound, analysis, released, authentication)
            except Hold as hold:
                inbound.status = InboundStatus.held.value
                inbound.hold_reason = str(hold)
                inbound.held_references = hold.waiting_for
                emit(
                    session,
                    inbound.account_id,
                    Event.message_held,
                    {"inbound_id": inbound.id, "user_id": inbound.user_id, "reason": str(hold)},
                )
                inbound.processed_at = datetime.now(UTC)
                metrics.message_finished_on_commit(session, Outcome.held, inbound.received_at)
                log.info("matcher.held", reason=str(hold))
                return Outcome.held
            inbound.status = InboundStatus.processed.value
            inbound.message_id = message.id
            inbound.hold_reason = None
            inbound.processed_at = datetime.now(UTC)
            inbound.last_error = None
            metrics.message_finished_on_commit(session, outcome, inbound.received_at)
            log.info("matcher.processed", outcome=outcome.value, message_id=str(message.id), kind=message.kind)
            return outcome

    def _authentication(self, inbound: InboundMessage) -> SenderAuthentication | None:
        """The sender checks recorded on the row, or (first time, or DNS did not answer last time) made now and
        recorded: a retry or a reprocess decides on the facts of arrival, not on today's DNS."""
        if inbound.auth_results is not None:
            recorded = SenderAuthentication.from_json(inbound.auth_results)
            if self.sender_auth is None or not recorded.had_temporary_error:
                return recorded
        if self.sender_auth is None:
            return None
        checked = authenticate(
            inbound.raw,
            envelope_from=inbound.envelope_from,
            client_ip=client_ip_of(inbound.peer),
            helo=inbound.helo,
            config=self.sender_auth,
        )
        inbound.auth_results = checked.as_json()
        inbound.auth_summary = checked.summary.value
        log.info("matcher.sender_authentication", summary=checked.summary.value, source=checked.source)
        return checked

    def _place(
        self,
        session: Session,
        context: AccountContext,
        inbound: InboundMessage,
        analysis: Analysis,
        released: list[uuid.UUID],
        authentication: SenderAuthentication | None = None,
    ) -> tuple[Message, Outcome]:
        user = session.get_one(User, inbound.user_id)
        parsed = analysis.message.mail
        sender = context.canonical(parsed.sender.address) if parsed.sender else None
        machine = analysis.machine
        sent_by_user = sender is not None and sender in context.verified.get(user.id, frozenset())
        if sent_by_user and sender is not None and self.sender_auth is not None and self.sender_auth.require:
            # Before anything is placed: forged mail must not even join threads (see placement.senders).
            forged = unauthenticated_claim(context, user, sender, authentication)
            if forged is not None:
                raise Hold(forged)

        if machine is not None:
            stored = self._store(session, context, inbound, analysis.message, Classified(machine.kind, machine.reason))
            if machine.kind is MessageKind.bounce:
                _mark_bounces(session, context, inbound, stored[0].id, authentication)
            return stored
        if sent_by_user:
            originals = analysis.originals
            # All originals' ids at once, in order: storing them one by one must not take locks out of order.
            lock_names(
                session,
                context.account_id,
                (
                    f"thread-key:{key}"
                    for o in originals
                    for key in (o.analysed.mail.message_id, *o.analysed.thread_references)
                ),
            )
            if not originals:
                stored = self._store(
                    session,
                    context,
                    inbound,
                    analysis.message,
                    Classified(MessageKind.sent, "From is a verified address of the user"),
                )
                released.extend(_release_waiting(session, context, user.id, stored[0], parsed))
                return stored
            results = [
                self._store(
                    session,
                    context,
                    inbound,
                    original.analysed,
                    Classified(
                        MessageKind.forwarded,
                        f"forwarded by the user ({original.how}); stored is the original message",
                    ),
                    Provenance(user.id, parsed.sent_at, original.confidence),
                )
                for original in originals
            ]
            for (message, _), original in zip(results, originals, strict=True):
                released.extend(_release_waiting(session, context, user.id, message, original.analysed.mail))
            return results[0]
        if sender is not None and context.is_internal(sender):
            raise Hold(
                f"From is {sender}, which is not a verified address of {user.email}; verify the alias and reprocess"
            )
        if _on_a_thread_of(session, context, user.id, parsed):  # locks its ids first: see _release_waiting
            return self._store(
                session,
                context,
                inbound,
                analysis.message,
                Classified(MessageKind.contact, "a contact wrote on a thread of the user"),
            )
        raise Hold(
            f"{sender or 'an unknown sender'} wrote to the Smart-BCC address directly, and the message belongs to none"
            f" of {user.email}'s threads",
            waiting_for=sorted({parsed.message_id, *parsed.references, *_subject_names(parsed, context)}),
        )

    def _store(
        self,
        session: Session,
        context: AccountContext,
        inbound: InboundMessage,
        analysed: AnalysedMail,
        classified: Classified,
        provenance: Provenance | None = None,
    ) -> tuple[Message, Outcome]:
        account_id = context.account_id
        parsed = analysed.mail
        # Everything that shares an id with this message waits for us (and we for it): see shared.locks.
        lock_names(
            session, account_id, (f"thread-key:{key}" for key in {parsed.message_id, *analysed.thread_references})
        )
        existing = session.scalars(
            select(Message).where(Message.account_id == account_id, Message.message_id_header == parsed.message_id)
        ).one_or_none()
        if existing is not None:
            return existing, Outcome.duplicate

        roles = _external_roles(parsed, context)
        people = plan_people(session, context, [address for _, address in roles])
        creates = classified.kind in _CREATING_RULES
        if creates and len(people.missing) > context.settings.max_people_per_message:
            raise Hold(
                f"the message would create {len(people.missing)} people; the account allows at most"
                f" {context.settings.max_people_per_message} per message"
            )

        sender = parsed.sender
        outbound = sender is not None and context.canonical(sender.address) in context.user_addresses
        thread_id = assign_thread(
            session,
            account_id,
            message_id=parsed.message_id,
            references=analysed.thread_references,
            subject=parsed.subject,
            sent_at=parsed.sent_at,
            participants=frozenset(context.canonical(a.address) for _, a in roles),
            context=context,
            ids_locked=True,
        )
        message = Message(
            account_id=account_id,
            user_id=inbound.user_id,
            thread_id=thread_id,
            message_id_header=parsed.message_id,
            in_reply_to=parsed.in_reply_to,
            references=list(parsed.references),
            subject=parsed.subject,
            subject_key=analysed.subject_key,
            from_name=sender.name if sender else None,
            from_address=sender.address if sender else None,
            to=[a.as_json() for a in parsed.to],
            cc=[a.as_json() for a in parsed.cc],
            sent_at=parsed.sent_at,
            direction=(Direction.outbound if outbound else Direction.inbound).value,
            text_body=parsed.text_body,
            html_body=parsed.html_body,
            new_text=analysed.new_text,
            defects=list(parsed.defects),
            kind=classified.kind.value,
            kind_reason=classified.reason,
            forwarded_by_user_id=provenance.forwarded_by if provenance else None,
            forwarded_at=provenance.forwarded_at if provenance else None,
            forward_confidence=provenance.confidence if provenance else None,
            auth_summary=inbound.auth_summary,
            auth_results=inbound.auth_results,
        )
        session.add(message)
        session.flush()
        for position, attachment in enumerate(parsed.attachments):
            session.add(
                Attachment(
                    account_id=account_id,
                    message_id=message.id,
                    position=position,
                    filename=attachment.filename,
                    content_type=attachment.content_type,
                    content_id=attachment.content_id,
                    size=len(attachment.content),
                    sha256=self.blobs.put(account_id, attachment.content),
                )
            )

        created: dict[str, uuid.UUID] = {}
        if creates:
            created = create_missing(
                session, context, people, rule=_CREATING_RULES[classified.kind], message_id=message.id
            )
        linked: set[tuple[uuid.UUID, str]] = set()
        for role, address in roles:
            canonical = context.canonical(address.address)
            person_id = people.found.get(canonical)
            if person_id is None or (person_id, role) in linked:
                continue
            linked.add((person_id, role))
            rule = _CREATING_RULES[classified.kind] if canonical in created else RULE_EXISTING_PERSON
            session.add(
                MessagePerson(account_id=account_id, message_id=message.id, person_id=person_id, role=role, rule=rule)
            )
        if creates:
            link_organizations(session, context, dict(people.found), message_id=message.id)
        routed_lead_id = lead_from_subaddress(inbound.envelope_to)
        lead_deal_id = None if routed_lead_id is None else link_lead(session, account_id, thread_id, routed_lead_id)
        decision = decide_deal(
            session,
            account_id,
            thread_id,
            message_id=message.id,
            user_id=inbound.user_id,
            routed_deal_id=deal_from_subaddress(inbound.envelope_to) or lead_deal_id,
        )
        _announce(session, account_id, message, created, decision)
        return message, Outcome.stored


def _announce(
    session: Session,
    account_id: uuid.UUID,
    message: Message,
    created: dict[str, uuid.UUID],
    decision: DealDecision,
) -> None:
    """Webhook events for what this message changed, in its own transaction (they leave only if it commits)."""
    for address, person_id in sorted(created.items()):
        emit(
            session,
            account_id,
            Event.person_created,
            {"person_id": person_id, "address": address, "created_by_message_id": message.id},
        )
    emit(
        session,
        account_id,
        Event.message_stored,
        {"message_id": message.id, "thread_id": message.thread_id, "kind": message.kind, "deal_id": decision.deal_id},
    )
    if decision.outcome is DealOutcome.linked:
        emit(
            session,
            account_id,
            Event.thread_linked,
            {"thread_id": message.thread_id, "deal_id": decision.deal_id, "linked_by_message_id": message.id},
        )
    if decision.outcome is DealOutcome.ask_user and decision.asked_anew:
        emit(
            session,
            account_id,
            Event.disambiguation_created,
            {"disambiguation_id": decision.disambiguation_id, "thread_id": message.thread_id},
        )


def _external_roles(parsed: ParsedMail, context: AccountContext) -> list[tuple[str, Address]]:
    roles: list[tuple[str, Address]] = []
    if parsed.sender is not None:
        roles.append(("from", parsed.sender))
    roles.extend(("to", address) for address in parsed.to)
    roles.extend(("cc", address) for address in parsed.cc)
    return [(role, a) for role, a in roles if not context.is_internal(a.address)]


def _on_a_thread_of(session: Session, context: AccountContext, user_id: uuid.UUID, parsed: ParsedMail) -> bool:
    """Does the message belong to a thread with mail of this user — by its references, or (without any) by
    subject, participant and time, as threading itself would join it?

    Its ids and subject names are locked first, so this check and a concurrent store of the user's message take
    turns: either we see that message, or it sees us held and releases us (`_release_waiting`).
    """
    subject_names = _subject_names(parsed, context)
    lock_names(
        session,
        context.account_id,
        [*(f"thread-key:{key}" for key in {parsed.message_id, *parsed.references}), *subject_names],
    )
    threads: set[uuid.UUID] = set()
    if parsed.references:
        threads |= set(
            session.scalars(
                select(ThreadKey.thread_id).where(
                    ThreadKey.account_id == context.account_id, ThreadKey.message_id_header.in_(parsed.references)
                )
            ).all()
        )
    else:
        threads |= threads_joined_by_subject(
            session,
            context,
            subject=parsed.subject,
            sent_at=parsed.sent_at,
            participants=_participants(parsed, context),
        )
    if not threads:
        return False
    found = session.scalar(
        select(Message.id)
        .where(Message.account_id == context.account_id, Message.user_id == user_id, Message.thread_id.in_(threads))
        .limit(1)
    )
    return found is not None


def _participants(parsed: ParsedMail, context: AccountContext) -> frozenset[str]:
    return frozenset(context.canonical(a.address) for _, a in _external_roles(parsed, context))


def _subject_names(parsed: ParsedMail, context: AccountContext) -> list[str]:
    if parsed.references:
        return []  # mail with references is never joined by subject
    return subject_lock_names(parsed.subject, _participants(parsed, context))


def _release_waiting(
    session: Session, context: AccountContext, user_id: uuid.UUID, message: Message, parsed: ParsedMail
) -> list[uuid.UUID]:
    """Held contact mail that this message's thread (by id, or by subject for reference-less mail) now gives a
    place: send it back to the matcher."""
    keys = list(
        session.scalars(
            select(ThreadKey.message_id_header).where(
                ThreadKey.account_id == context.account_id, ThreadKey.thread_id == message.thread_id
            )
        ).all()
    )
    keys.extend(subject_lock_names(parsed.subject, _participants(parsed, context)))
    released = session.scalars(
        update(InboundMessage)
        .where(
            InboundMessage.account_id == context.account_id,
            InboundMessage.user_id == user_id,
            InboundMessage.status == InboundStatus.held.value,
            InboundMessage.held_references.overlap(keys),
        )
        .values(status=InboundStatus.received.value, hold_reason=None, held_references=None, attempts=0)
        .returning(InboundMessage.id)
    ).all()
    return list(released)


def _mark_bounces(
    session: Session,
    context: AccountContext,
    inbound: InboundMessage,
    message_id: uuid.UUID,
    authentication: SenderAuthentication | None,
) -> None:
    failed = trusted_bounce_recipients(session, context, inbound.user_id, inbound.raw, authentication)
    if not failed:
        return
    session.execute(
        update(PersonEmail)
        .where(PersonEmail.account_id == context.account_id, PersonEmail.address.in_(failed))
        .values(bounced_at=datetime.now(UTC), bounce_message_id=message_id)
    )
