"""Inbound messages, a batch at a time, top to bottom:

    claim (count the attempt, one statement) → one transaction: lock the rows, analyse the batch (pure) while
    its sender checks wait on DNS side by side → lock every name the batch needs, then look up what its messages
    connect to → for each message: decide (sent / forwarded / contact / machine / hold) → thread → store →
    people → organizations → then for the batch: each thread's deal → mark every row processed or held →
    release held mail that now has a place → commit → log, count, enqueue what was released

The rows a message stores (its thread, the thread's ids and participants, the message, its links to people, its
attachments) are inserted with the batch's next statement (see placement.rows): in the common case the whole
batch's rows go in one statement, where a statement per message cost most of the matcher's CPU.

Claiming counts an attempt in its own committed transaction, before any work, so a message that kills its worker
still counts; the worker then holds the rows locked while it works, so once its connection is gone (and a short
claim window has passed) the message is due again, alone, and after `max_attempts` the sweep
marks it failed with the reason. A message that fails rolls its whole batch back (holds are decided before a
message writes anything, so no savepoint per message is needed): the rest of the batch is placed again without
it, and the failed one is tried again by itself. (An insert that fails surfaces at the statement that sends it,
which may be a later message's or the batch's end: the innocent message is then tried by itself, and succeeds,
until the one at fault is alone.) Every row a message produces commits
with its status, so a crash anywhere leaves it `received` for a retry, and a second run finds it done and changes
nothing. Processing depends only on the raw bytes and the CRM's current state, so a held message can be
reprocessed once its cause is fixed.
"""

from __future__ import annotations

import enum
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.authentication import SenderAuthConfig, SenderAuthentication, authenticate, client_ip_of
from services.matcher.mail.analysis import AnalysedMail, Analysis
from services.matcher.mail.budget import InProcessAnalyser
from services.matcher.mail.decision import Decision, DecisionKind, decide
from services.matcher.mail.parsing import Address, ParsedMail
from services.matcher.placement.account import AccountContext, AccountUser, domain_of, load_account
from services.matcher.placement.deals import (
    DealDecided,
    DealOutcome,
    DealToDecide,
    deal_from_subaddress,
    decide_deals,
    lead_from_subaddress,
    link_lead,
)
from services.matcher.placement.organizations import domain_owners, link_organizations, unowned_domains
from services.matcher.placement.people import (
    RULE_PARTICIPANT_OF_CONTACT_MAIL,
    RULE_PARTICIPANT_OF_FORWARDED_MAIL,
    RULE_RECIPIENT_OF_SENT_MAIL,
    create_missing,
    plan_people,
    prefetch_people,
)
from services.matcher.placement.rows import ATTACHMENTS, MESSAGE_PERSONS, MESSAGES, insert_later
from services.matcher.placement.senders import trusted_bounce_recipients, unauthenticated_claim
from services.matcher.placement.threads import (
    assign_thread,
    prefetch_connections,
    subject_lock_names,
    threads_joined_by_subject,
)
from shared import metrics
from shared.blobstore import BlobStore
from shared.db import DirectSql, execute_direct, transaction
from shared.events import (
    DisambiguationCreated,
    MessageHeld,
    MessageStored,
    PersonCreated,
    ThreadLinked,
    emit,
)
from shared.locks import lock_all, lock_names
from shared.models import (
    AuthSummary,
    CreatedFrom,
    Direction,
    InboundStatus,
    Message,
    MessageKind,
    MessagePersonRole,
    PersonEmail,
    PersonRule,
    ThreadKey,
)

log = structlog.get_logger(__name__)

RULE_EXISTING_PERSON = PersonRule.address_of_existing_person
_CREATING_RULES = {
    MessageKind.sent: RULE_RECIPIENT_OF_SENT_MAIL,
    MessageKind.forwarded: RULE_PARTICIPANT_OF_FORWARDED_MAIL,
    MessageKind.contact: RULE_PARTICIPANT_OF_CONTACT_MAIL,
}

# Claim the requested rows, by their ids (a queue message's group: the gateway sends the ids it committed close
# together, the sweep what waited too long). In a batch every row is fresh (never tried): a row that was tried
# before runs alone (`:alone`), so that a message that keeps killing its batch is isolated. The attempt is counted
# and the claim taken in the same statement, committed before any work. Rows another worker holds locked are
# skipped; a claim is only respected for `lease` seconds, long enough for its worker to lock what it claimed.
# Claiming other due rows as well (the queue's batching, when every message had a queue message of its own) read
# the whole backlog to choose them, and took other workers' groups away from them.
_CLAIM = DirectSql(
    "WITH due AS ("
    " SELECT id FROM inbound_messages"
    " WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'received' AND attempts < :max_attempts"
    " AND (claimed_until IS NULL OR claimed_until < now()) AND (:alone OR attempts = 0)"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE inbound_messages AS m SET attempts = m.attempts + 1,"
    " claimed_until = now() + make_interval(secs => :lease)"
    " FROM due WHERE m.id = due.id RETURNING m.id, m.attempts, m.raw"
)
# Requested rows a batch did not claim that are due for another try (alone).
_RETRIES = DirectSql(
    "SELECT id FROM inbound_messages WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'received'"
    " AND attempts > 0 AND attempts < :max_attempts AND (claimed_until IS NULL OR claimed_until < now())"
    " ORDER BY received_at"
)
_END_CLAIMS = text(
    "UPDATE inbound_messages SET claimed_until = NULL WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'received'"
)
_STATE = text("SELECT status, claimed_until > now() AS claimed FROM inbound_messages WHERE id = :id")
_RECORD_FAILURE = text(
    "UPDATE inbound_messages SET last_error = :error, claimed_until = NULL,"
    " status = CASE WHEN attempts >= :max_attempts THEN 'failed' ELSE status END"
    " WHERE id = :id AND status = 'received' RETURNING attempts, status"
)


class Outcome(enum.StrEnum):
    stored = "stored"
    duplicate = "duplicate"  # the same Message-ID was already stored (re-sent or BCC'd twice)
    held = "held"
    already_done = "already_done"
    busy = "busy"  # another worker holds it right now
    missing = "missing"
    failed = "failed"  # failed for good after its last attempt (the reason is on the row)
    retry = "retry"  # this attempt failed; it is due again


class Hold(Exception):  # noqa: N818 -- a decision, not an error
    """Keep the raw message, place nothing, and tell the user why. Raised only before the message writes anything:
    a batch has no savepoint per message, so a hold cannot undo what its message already wrote."""

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


@dataclass(frozen=True)
class StoredMessage:
    """What placing needs of a message once it is stored (or found stored already)."""

    id: uuid.UUID
    thread_id: uuid.UUID
    kind: MessageKind


@dataclass
class Inbound:
    """A claimed row, locked by the batch's transaction: what placing a message needs of it (the claim brought its
    bytes). Read with a fixed statement: the ORM's select and objects cost more than everything else a batch of
    one message does before placing it."""

    id: uuid.UUID
    account_id: uuid.UUID
    user_id: uuid.UUID
    envelope_from: str
    envelope_to: str
    peer: str | None
    helo: str | None
    received_at: datetime
    auth_summary: AuthSummary | None
    auth_results: dict[str, Any] | None

    @classmethod
    def of(cls, row: Any) -> Inbound:
        summary = None if row.auth_summary is None else AuthSummary(row.auth_summary)
        return cls(
            row.id,
            row.account_id,
            row.user_id,
            row.envelope_from,
            row.envelope_to,
            row.peer,
            row.helo,
            row.received_at,
            summary,
            row.auth_results,
        )


# The claimed rows still to place, locked until the batch commits, oldest first.
_LOCK_CLAIMED = DirectSql(
    "SELECT id, account_id, user_id, envelope_from, envelope_to, peer, helo, received_at, auth_summary, auth_results"
    " FROM inbound_messages WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'received'"
    " ORDER BY received_at, id FOR UPDATE"
)


@dataclass(frozen=True)
class Claimed:
    inbound_id: uuid.UUID
    attempts: int
    raw: bytes


@dataclass
class BatchResult:
    outcomes: dict[uuid.UUID, Outcome] = field(default_factory=dict)
    errors: dict[uuid.UUID, BaseException] = field(default_factory=dict)  # the last error of each `retry`/`failed`


class RecentlyPlaced:
    """A bounded, thread-safe set of the last `capacity` ids added (the oldest are forgotten first)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, inbound_id: uuid.UUID) -> None:
        with self._lock:
            self._ids[inbound_id] = None
            if len(self._ids) > self._capacity:
                self._ids.popitem(last=False)

    def __contains__(self, inbound_id: object) -> bool:
        with self._lock:
            return inbound_id in self._ids


def _no_enqueue(_inbound_id: uuid.UUID) -> None:
    """Without a broker (tests, evaluations) released messages wait for the recovery sweep."""


@dataclass(frozen=True)
class Matcher:
    sessions: sessionmaker[Session]
    blobs: BlobStore
    # Called after the commit for each held message this one released (the worker passes its broker's enqueue).
    enqueue: Callable[[uuid.UUID], None] = field(default=_no_enqueue)
    # The most messages placed in one transaction: a queue message with more ids is placed in turns.
    batch_size: int = 1
    max_attempts: int = 5
    # A claimed row is the claimer's for this long even before it locks it; after that only its row lock (held
    # while it works) keeps others off, so a dead worker's messages are due again within seconds.
    lease_seconds: float = 10.0
    # The one place analyses come from: a batch of raw messages in, one Analysis each out.
    analyse_all: Callable[[Sequence[bytes]], list[Analysis]] = field(default=InProcessAnalyser().analyse_all)
    # Sender authentication (SPF/DKIM/DMARC); None checks nothing and lets every verified From count (tests of
    # placement, evaluations). The worker passes what the settings say.
    sender_auth: SenderAuthConfig | None = None
    # Messages this process placed: a queue message that finds all its ids here (a retry, the sweep's) needs no
    # claim. Only `processed` is remembered, because nothing ever sets a processed message back to `received`.
    placed: RecentlyPlaced = field(default_factory=lambda: RecentlyPlaced(100_000), compare=False)
    # Sender checks mostly wait on DNS: a batch's run side by side in these threads (started on demand, shared by
    # the process's consumer threads), so a batch holds its rows for its slowest check, not for their sum. Enough
    # for four consumer threads' batches of 32 at once (twice the defaults): when every check of a flood waits out
    # its DNS budget, a batch must not also queue behind another batch's checks.
    sender_checks: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=128, thread_name_prefix="sender-checks"),
        compare=False,
    )

    def process(self, inbound_id: uuid.UUID) -> Outcome:
        """One message by itself: claim, place, commit. Raises when this attempt failed and another is due."""
        result = self.run([inbound_id], alone=True)
        return self._outcome_or_raise(inbound_id, result)

    def process_due(self, inbound_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Outcome]:
        """The actor's work: these messages (one queue message carries the group the gateway committed together),
        `batch_size` at a time in one transaction. A message that was tried before runs alone. Raises when one of
        them failed and another attempt is due (the queue message is retried; what was placed is skipped then)."""
        requested = [inbound_id for inbound_id in dict.fromkeys(inbound_ids) if inbound_id not in self.placed]
        outcomes = dict.fromkeys(inbound_ids, Outcome.already_done)
        if not requested:
            return outcomes
        result = BatchResult()
        size = max(self.batch_size, 1)
        for start in range(0, len(requested), size):
            batch = self.run(requested[start : start + size], alone=False, explain_unclaimed=False)
            result.outcomes.update(batch.outcomes)
            result.errors.update(batch.errors)
        for retried_id in self._retries([i for i in requested if result.outcomes.get(i) is Outcome.busy]):
            alone = self.run([retried_id], alone=True)
            result.outcomes.update(alone.outcomes)
            result.errors.update(alone.errors)
        for inbound_id in requested:
            outcomes[inbound_id] = self._outcome_or_raise(inbound_id, result)
        return outcomes

    def _outcome_or_raise(self, inbound_id: uuid.UUID, result: BatchResult) -> Outcome:
        outcome = result.outcomes[inbound_id]
        if outcome is Outcome.retry:
            raise result.errors[inbound_id]
        return outcome

    def run(self, requested: Sequence[uuid.UUID], *, alone: bool, explain_unclaimed: bool = True) -> BatchResult:
        """`explain_unclaimed`: find out why a requested message was not claimed (done, busy or missing); the
        actor does not need to know (a retried queue message finds most of its rows done)."""
        claimed = self._claim(requested, alone=alone)
        result = BatchResult()
        claimed_ids = {claim.inbound_id for claim in claimed}
        for inbound_id in requested:
            if inbound_id not in claimed_ids:
                result.outcomes[inbound_id] = self._not_claimed(inbound_id) if explain_unclaimed else Outcome.busy
        if not claimed:
            return result
        failed: dict[uuid.UUID, Exception] = {}
        analyses: dict[uuid.UUID, Analysis] = {}
        checks: dict[uuid.UUID, SenderAuthentication] = {}
        remaining = claimed
        while remaining:
            try:
                placed = self._place_batch(remaining, analyses, checks)
            except _MessageFailedError as failure:
                # Its batch-mates' work was rolled back with it: place them again, without it.
                log.warning("matcher.message_failed_in_batch", inbound_id=str(failure.inbound_id), error=failure.why)
                failed[failure.inbound_id] = failure.error
                remaining = [claim for claim in remaining if claim.inbound_id != failure.inbound_id]
                continue
            except Exception as exc:
                log.warning("matcher.batch_failed", size=len(remaining), error=f"{type(exc).__name__}: {exc}"[:500])
                failed.update((claim.inbound_id, exc) for claim in remaining)
                break
            self._report(placed, result)
            break
        if len(claimed) == 1:
            for failed_id, error in failed.items():
                result.outcomes[failed_id] = self._record_failure(failed_id, error)
                result.errors[failed_id] = error
            return result
        # What failed in a batch is tried again alone, so one bad message costs the others nothing.
        self._end_claims(list(failed))
        for failed_id in failed:
            by_itself = self.run([failed_id], alone=True)
            result.outcomes.update(by_itself.outcomes)
            result.errors.update(by_itself.errors)
        return result

    def _enqueue_safely(self, inbound_id: uuid.UUID) -> None:
        try:
            self.enqueue(inbound_id)
        except Exception:
            log.warning("matcher.enqueue_failed_left_for_sweep", released_id=str(inbound_id))

    def _claim(self, requested: Sequence[uuid.UUID], *, alone: bool) -> list[Claimed]:
        # One statement, atomic by itself, so no transaction around it: that saves the BEGIN and COMMIT round trips.
        with self.sessions() as session:
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            rows = execute_direct(
                session,
                _CLAIM,
                {
                    "ids": list(requested),
                    "alone": alone,
                    "max_attempts": self.max_attempts,
                    "lease": self.lease_seconds,
                },
                binary=True,  # the raw messages, as bytes
            ).fetchall()
        return [Claimed(row.id, row.attempts, row.raw) for row in rows]

    def _retries(self, unclaimed: list[uuid.UUID]) -> list[uuid.UUID]:
        if not unclaimed:
            return []
        with self.sessions() as session:
            rows = execute_direct(session, _RETRIES, {"ids": unclaimed, "max_attempts": self.max_attempts})
            return [row.id for row in rows]

    def _end_claims(self, inbound_ids: list[uuid.UUID]) -> None:
        if inbound_ids:
            with transaction(self.sessions) as session:
                session.execute(_END_CLAIMS, {"ids": inbound_ids})

    def _not_claimed(self, inbound_id: uuid.UUID) -> Outcome:
        with self.sessions() as session:
            state = session.execute(_STATE, {"id": inbound_id}).one_or_none()
        if state is None:
            return Outcome.missing
        if state.status != InboundStatus.received:
            return Outcome.already_done
        # Claimed by a live worker, locked for a moment, or out of attempts (the sweep marks it failed).
        return Outcome.busy

    def _record_failure(self, inbound_id: uuid.UUID, exc: BaseException) -> Outcome:
        """The attempt is already counted; keep the reason, end the claim, and give up after the last one."""
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        with structlog.contextvars.bound_contextvars(inbound_id=str(inbound_id)):
            try:
                with transaction(self.sessions) as session:
                    row = session.execute(
                        _RECORD_FAILURE, {"error": reason, "max_attempts": self.max_attempts, "id": inbound_id}
                    ).one_or_none()
            except Exception:
                log.exception("matcher.failure_not_recorded")
                return Outcome.retry  # the lease runs out and the sweep brings it back
            if row is None:
                return Outcome.already_done
            metrics.processing_failed(for_good=row.status == InboundStatus.failed)
            if row.status == InboundStatus.failed:
                log.error("matcher.gave_up", attempts=row.attempts, reason=reason)
                return Outcome.failed
            log.warning("matcher.attempt_failed", attempts=row.attempts, reason=reason)
            return Outcome.retry

    def _place_batch(
        self,
        claimed: list[Claimed],
        analyses: dict[uuid.UUID, Analysis],
        checks: dict[uuid.UUID, SenderAuthentication],
    ) -> _Placed:
        """Place what was claimed in one transaction, or raise `_MessageFailedError` for the first message that fails
        (everything is rolled back: the caller places the others again without it).

        The rows are locked first, then analysed and their senders checked (side by side) while locked: a claimed
        row that nobody holds locked is one whose worker is gone, and the next claim (or sweep) may take it once
        the short claim window is over. Analyses and sender checks are kept in `analyses` and `checks` for a
        second try of the same batch."""
        placed = _Placed()
        with transaction(self.sessions) as session:
            inbounds = [
                Inbound.of(row)
                for row in execute_direct(session, _LOCK_CLAIMED, {"ids": [claim.inbound_id for claim in claimed]})
            ]
            raws = {claim.inbound_id: claim.raw for claim in claimed}
            checking = self._start_sender_checks(inbounds, raws, checks)
            unanalysed = [inbound_id for inbound_id in raws if inbound_id not in analyses]
            if unanalysed:
                fresh = self.analyse_all([raws[inbound_id] for inbound_id in unanalysed])
                analyses.update(zip(unanalysed, fresh, strict=True))
            _collect_sender_checks(checking, checks)
            contexts = {
                account_id: load_account(session, account_id) for account_id in {i.account_id for i in inbounds}
            }
            _lock_batch(session, [(contexts[inbound.account_id], analyses[inbound.id]) for inbound in inbounds])
            work = _BatchWork()
            for inbound in inbounds:
                with structlog.contextvars.bound_contextvars(inbound_id=str(inbound.id)):
                    try:
                        finished = self._one(
                            session,
                            contexts[inbound.account_id],
                            contexts[inbound.account_id].users[inbound.user_id],
                            inbound,
                            analyses[inbound.id],
                            checks.get(inbound.id),
                            work,
                        )
                    except Exception as exc:
                        raise _MessageFailedError(inbound.id, exc) from exc
                placed.finished.append(finished)
            for account_id, stored in work.deals.items():
                _announce_deals(session, account_id, decide_deals(session, account_id, stored), work.stored)
            if placed.finished:
                session.execute(_FINISH, [finished.row for finished in placed.finished])
            placed.released = _release_waiting(session, work.releases)
            placed.already_done = list(raws.keys() - {inbound.id for inbound in inbounds})
        return placed

    def _report(self, placed: _Placed, result: BatchResult) -> None:
        """After the commit: what became of each message, its metrics and log line, and the held mail it freed."""
        for finished in placed.finished:
            result.outcomes[finished.inbound_id] = finished.outcome
            if finished.outcome in (Outcome.stored, Outcome.duplicate):
                self.placed.add(finished.inbound_id)
            metrics.message_finished(finished.outcome, finished.received_at)
            log.info(finished.event, inbound_id=str(finished.inbound_id), **finished.log_fields)
        for inbound_id in placed.already_done:
            result.outcomes[inbound_id] = Outcome.already_done
        for held_id in placed.released:
            self._enqueue_safely(held_id)

    def _one(
        self,
        session: Session,
        context: AccountContext,
        user: AccountUser,
        inbound: Inbound,
        analysis: Analysis,
        checked: SenderAuthentication | None,
        work: _BatchWork,
    ) -> _Finished:
        """Place one message of the batch, or hold it (a hold is decided before anything is written)."""
        authentication = self._authentication(inbound, checked)
        try:
            message, outcome = self._place(session, context, user, inbound, analysis, work, authentication)
        except Hold as hold:
            emit(
                session,
                inbound.account_id,
                MessageHeld(inbound_id=inbound.id, user_id=inbound.user_id, reason=str(hold)),
            )
            return _Finished(
                inbound.id,
                Outcome.held,
                inbound.received_at,
                row=_finished_row(inbound, InboundStatus.held, hold_reason=str(hold), waiting_for=hold.waiting_for),
                event="matcher.held",
                log_fields={"reason": str(hold)},
            )
        return _Finished(
            inbound.id,
            outcome,
            inbound.received_at,
            row=_finished_row(inbound, InboundStatus.processed, message_id=message.id),
            event="matcher.processed",
            log_fields={"outcome": outcome.value, "message_id": str(message.id), "kind": message.kind},
        )

    def _start_sender_checks(
        self,
        inbounds: Sequence[Inbound],
        raws: Mapping[uuid.UUID, bytes],
        checks: Mapping[uuid.UUID, SenderAuthentication],
    ) -> dict[uuid.UUID, Future[SenderAuthentication]]:
        """Sender checks for the messages that need one, started side by side: those without recorded results, or
        whose DNS did not answer last time. A retry or a reprocess decides on the facts of arrival, not on
        today's DNS."""
        config = self.sender_auth
        if config is None:
            return {}
        return {
            inbound.id: self.sender_checks.submit(
                authenticate,
                raws[inbound.id],
                envelope_from=inbound.envelope_from,
                client_ip=client_ip_of(inbound.peer),
                helo=inbound.helo,
                config=config,
            )
            for inbound in inbounds
            if inbound.id not in checks
            and (
                inbound.auth_results is None or SenderAuthentication.from_json(inbound.auth_results).had_temporary_error
            )
        }

    def _authentication(self, inbound: Inbound, checked: SenderAuthentication | None) -> SenderAuthentication | None:
        """The sender checks made for this batch, recorded on the row, or else the ones recorded before."""
        if checked is None:
            return None if inbound.auth_results is None else SenderAuthentication.from_json(inbound.auth_results)
        # Kept for the messages stored from it; the batch's `_FINISH` writes them with the rest of the row.
        inbound.auth_results = checked.as_json()
        inbound.auth_summary = checked.summary
        log.info("matcher.sender_authentication", summary=checked.summary.value, source=checked.source)
        return checked

    def _place(
        self,
        session: Session,
        context: AccountContext,
        user: AccountUser,
        inbound: Inbound,
        analysis: Analysis,
        work: _BatchWork,
        authentication: SenderAuthentication | None = None,
    ) -> tuple[StoredMessage, Outcome]:
        parsed = analysis.message.mail
        sender = context.canonical(parsed.sender.address) if parsed.sender else None
        sent_by_user = sender is not None and sender in context.verified.get(user.id, frozenset())
        if sent_by_user and sender is not None and self.sender_auth is not None and self.sender_auth.require:
            # Before anything is placed: forged mail must not even join threads (see placement.senders).
            forged = unauthenticated_claim(context, user, sender, authentication)
            if forged is not None:
                raise Hold(forged)
        decision = decide(
            analysis,
            sent_by_user=sent_by_user,
            sender_is_internal=sender is not None and context.is_internal(sender),
            unverified_reason=(
                f"From is {sender}, which is not a verified address of {user.email}; verify the alias and reprocess"
            ),
        )
        match decision.kind:
            case DecisionKind.machine:
                assert decision.machine is not None
                machine = decision.machine
                stored = self._store(
                    session, context, inbound, analysis.message, Classified(machine.kind, machine.reason), work
                )
                if machine.kind is MessageKind.bounce:
                    _mark_bounces(session, context, inbound, analysis, stored[0].id, authentication)
                return stored
            case DecisionKind.sent:
                _check_people_cap(session, context, [parsed])
                stored = self._store(
                    session,
                    context,
                    inbound,
                    analysis.message,
                    Classified(MessageKind.sent, "From is a verified address of the user"),
                    work,
                )
                work.releases.append(_Release.of(context, user.id, stored[0], analysis.message))
                return stored
            case DecisionKind.forwarded:
                return self._store_originals(session, context, user, inbound, analysis, decision, work)
            case DecisionKind.contact:
                if not _on_a_thread_of(session, context, user.id, analysis.message):
                    raise Hold(
                        f"{sender or 'an unknown sender'} wrote to the Smart-BCC address directly, and the message"
                        f" belongs to none of {user.email}'s threads",
                        waiting_for=sorted(
                            {parsed.message_id, *analysis.message.thread_references, *_subject_names(parsed, context)}
                        ),
                    )
                _check_people_cap(session, context, [parsed])
                return self._store(
                    session,
                    context,
                    inbound,
                    analysis.message,
                    Classified(MessageKind.contact, "a contact wrote on a thread of the user"),
                    work,
                )
            case DecisionKind.hold:
                raise Hold(decision.hold_reason or "held")

    def _store_originals(
        self,
        session: Session,
        context: AccountContext,
        user: AccountUser,
        inbound: Inbound,
        analysis: Analysis,
        decision: Decision,
        work: _BatchWork,
    ) -> tuple[StoredMessage, Outcome]:
        originals = decision.originals
        # One inbound message, one cap: a forward of five originals may not create five times the allowance.
        _check_people_cap(session, context, [original.analysed.mail for original in originals])
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
                work,
                Provenance(user.id, analysis.message.mail.sent_at, original.confidence),
            )
            for original in originals
        ]
        for (message, _), original in zip(results, originals, strict=True):
            work.releases.append(_Release.of(context, user.id, message, original.analysed))
        return results[0]

    def _store(
        self,
        session: Session,
        context: AccountContext,
        inbound: Inbound,
        analysed: AnalysedMail,
        classified: Classified,
        work: _BatchWork,
        provenance: Provenance | None = None,
    ) -> tuple[StoredMessage, Outcome]:
        account_id = context.account_id
        parsed = analysed.mail
        # Everything that shares an id with this message waits for us (and we for it): see shared.locks.
        lock_names(
            session, account_id, (f"thread-key:{key}" for key in {parsed.message_id, *analysed.thread_references})
        )
        existing = _stored_message(session, account_id, parsed.message_id)
        if existing is not None:
            return StoredMessage(existing.id, existing.thread_id, existing.kind), Outcome.duplicate
        # From here on a second copy in the same batch must look (if the batch rolls back, the next try starts
        # with a fresh session).
        session.info.get(_CHECKED_IDS, {}).pop((account_id, parsed.message_id), None)

        roles = _external_roles(parsed, context)
        people = plan_people(session, context, [address for _, address in roles])
        creates = classified.kind in _CREATING_RULES

        sender = parsed.sender
        outbound = sender is not None and context.canonical(sender.address) in context.user_addresses
        thread = assign_thread(
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
        thread_id = thread.id
        # Inserted with the batch's next statement (see placement.rows): nothing here reads or changes these rows
        # again, and a batch's rows go in together.
        message = StoredMessage(uuid.uuid4(), thread_id, classified.kind)
        insert_later(
            session,
            MESSAGES,
            [
                {
                    "id": message.id,
                    "account_id": account_id,
                    "user_id": inbound.user_id,
                    "thread_id": thread_id,
                    "message_id_header": parsed.message_id,
                    "in_reply_to": parsed.in_reply_to,
                    "references": list(parsed.references),
                    "subject": parsed.subject,
                    "subject_key": analysed.subject_key,
                    "from_name": sender.name if sender else None,
                    "from_address": sender.address if sender else None,
                    "to": [a.as_json() for a in parsed.to],
                    "cc": [a.as_json() for a in parsed.cc],
                    "sent_at": parsed.sent_at,
                    "direction": Direction.outbound if outbound else Direction.inbound,
                    "text_body": parsed.text_body,
                    "html_body": parsed.html_body,
                    "new_text": analysed.new_text,
                    "defects": list(parsed.defects),
                    "kind": classified.kind,
                    "kind_reason": classified.reason,
                    "forwarded_by_user_id": provenance.forwarded_by if provenance else None,
                    "forwarded_at": provenance.forwarded_at if provenance else None,
                    "forward_confidence": provenance.confidence if provenance else None,
                    "auth_summary": inbound.auth_summary,
                    "auth_results": inbound.auth_results,
                }
            ],
        )
        # The common case: everybody on it exists, so its links to them go in with it.
        people_to_create = creates and bool(people.missing)
        if not people_to_create:
            _link_people(session, account_id, message.id, _people_links(roles, context, people.found, {}, None))
        insert_later(
            session,
            ATTACHMENTS,
            [
                {
                    "id": uuid.uuid4(),
                    "account_id": account_id,
                    "message_id": message.id,
                    "position": position,
                    "filename": attachment.filename,
                    "content_type": attachment.content_type,
                    "content_id": attachment.content_id,
                    "size": len(attachment.content),
                    "sha256": self.blobs.put(account_id, attachment.content),
                }
                for position, attachment in enumerate(parsed.attachments)
            ],
        )

        created: dict[str, uuid.UUID] = {}
        if creates:
            owners = domain_owners(session, context, [*people.found, *people.missing], message_id=message.id)
            if people_to_create:
                # The persons' provenance points at the message, so they follow it, and the links follow them.
                created = create_missing(
                    session,
                    context,
                    people,
                    rule=_CREATING_RULES[classified.kind],
                    message_id=message.id,
                    organizations=owners,
                )
                links = _people_links(roles, context, people.found, created, _CREATING_RULES[classified.kind])
                _link_people(session, account_id, message.id, links)
            link_organizations(session, context, dict(people.found), owners)
        routed_lead_id = lead_from_subaddress(inbound.envelope_to)
        lead_deal_id = None if routed_lead_id is None else link_lead(session, account_id, thread_id, routed_lead_id)
        _announce_persons(session, account_id, message, created, _CREATING_RULES.get(classified.kind))
        work.stored[message.id] = message
        work.deals.setdefault(account_id, []).append(
            DealToDecide(message.id, thread, inbound.user_id, deal_from_subaddress(inbound.envelope_to) or lead_deal_id)
        )
        return message, Outcome.stored


def _people_links(
    roles: list[tuple[MessagePersonRole, Address]],
    context: AccountContext,
    found: Mapping[str, uuid.UUID],
    created: Mapping[str, uuid.UUID],
    creating_rule: PersonRule | None,
) -> dict[tuple[uuid.UUID, MessagePersonRole], PersonRule]:
    """(person, role) → the rule that links them: the creating rule for persons this message created."""
    links: dict[tuple[uuid.UUID, MessagePersonRole], PersonRule] = {}
    for role, address in roles:
        canonical = context.canonical(address.address)
        person_id = found.get(canonical)
        if person_id is None or (person_id, role) in links:
            continue
        links[person_id, role] = creating_rule if canonical in created and creating_rule else RULE_EXISTING_PERSON
    return links


def _link_people(
    session: Session,
    account_id: uuid.UUID,
    message_id: uuid.UUID,
    links: dict[tuple[uuid.UUID, MessagePersonRole], PersonRule],
) -> None:
    insert_later(
        session,
        MESSAGE_PERSONS,
        [
            {"account_id": account_id, "message_id": message_id, "person_id": person_id, "role": role, "rule": rule}
            for (person_id, role), rule in links.items()
        ],
    )


def _check_people_cap(session: Session, context: AccountContext, mails: Sequence[ParsedMail]) -> None:
    """Hold the inbound message when all it stores together would create more people than the account allows."""
    addresses = [address for mail in mails for _, address in _external_roles(mail, context)]
    missing = len(plan_people(session, context, addresses).missing)
    cap = context.settings.max_people_per_message
    if missing > cap:
        raise Hold(f"the message would create {missing} people; the account allows at most {cap} per message")


def _lock_batch(session: Session, batch: list[tuple[AccountContext, Analysis]]) -> None:
    """Every name any message of the batch may lock, in one sorted round trip: workers that take their locks all at
    once, in one global order, cannot deadlock on them. The persons and organizations of all its addresses are
    looked up first (one query each per account), so that only addresses and domains that may get a new person or
    organization are locked: mail to a known customer must not serialize every batch that mentions them."""
    participants: dict[uuid.UUID, set[str]] = {}
    for context, analysis in batch:
        for analysed in _mails_of(analysis):
            participants.setdefault(context.account_id, set()).update(_participants(analysed.mail, context))
    new_people = prefetch_people(session, participants)
    contexts = {context.account_id: context for context, _ in batch}
    new_domains = {
        account_id: unowned_domains(session, contexts[account_id], addresses)
        for account_id, addresses in participants.items()
    }
    names: list[tuple[uuid.UUID, str]] = []
    # Each mail's ids, subject, date and external participants, as `assign_thread` will be given them.
    threading_inputs: dict[uuid.UUID, list[tuple[set[str], str | None, datetime | None, frozenset[str]]]] = {}
    for context, analysis in batch:
        account_id = context.account_id
        for analysed in _mails_of(analysis):
            parsed = analysed.mail
            ids = {parsed.message_id, *analysed.thread_references, *parsed.references}
            names.extend((account_id, f"thread-key:{key}") for key in ids)
            mail_participants = _participants(parsed, context)
            threading_inputs.setdefault(account_id, []).append(
                ({parsed.message_id, *analysed.thread_references}, parsed.subject, parsed.sent_at, mail_participants)
            )
            names.extend((account_id, name) for name in subject_lock_names(parsed.subject, mail_participants))
            for address in mail_participants:
                if address in new_people[account_id]:
                    names.append((account_id, f"person-address:{address}"))
                if domain_of(address) in new_domains[account_id]:
                    names.append((account_id, f"organization-domain:{domain_of(address)}"))
    lock_all(session, names)
    # Under their locks, the addresses that had no person may have got one from a worker that held them: look once
    # for the batch, so that creating a person needs no look of its own.
    prefetch_people(session, {account_id: addresses for account_id, addresses in new_people.items() if addresses})
    # Under the locks of their ids: what each of the batch's messages connects to, and which may be stored already
    # (only an id that is a thread key can be: a query only for those, per account).
    keyed = {
        account_id: prefetch_connections(session, account_id, mails) for account_id, mails in threading_inputs.items()
    }
    for account_id, headers in _message_ids_by_account(batch).items():
        _note_stored_ids(session, account_id, headers, keyed.get(account_id, set()))


_CHECKED_IDS = "mailroom.checked_message_ids"  # (account, Message-ID) → may it be stored already?


def _message_ids_by_account(batch: list[tuple[AccountContext, Analysis]]) -> dict[uuid.UUID, set[str]]:
    headers: dict[uuid.UUID, set[str]] = {}
    for context, analysis in batch:
        headers.setdefault(context.account_id, set()).update(a.mail.message_id for a in _mails_of(analysis))
    return headers


_STORED_IDS = DirectSql(
    "SELECT message_id_header FROM messages"
    " WHERE account_id = :account_id AND message_id_header = ANY(CAST(:headers AS text[]))"
)


def _note_stored_ids(session: Session, account_id: uuid.UUID, headers: set[str], thread_keys: set[str]) -> None:
    """Remember for the batch which of these Message-IDs are stored; `thread_keys`: those that are thread keys,
    the only ones that can be."""
    maybe_stored = sorted(headers & thread_keys)
    stored: set[str] = set()
    if maybe_stored:
        rows = execute_direct(session, _STORED_IDS, {"account_id": account_id, "headers": maybe_stored})
        stored = {row.message_id_header for row in rows}
    checked: dict[tuple[uuid.UUID, str], bool] = session.info.setdefault(_CHECKED_IDS, {})
    checked.update(((account_id, header), header in stored) for header in headers)


def _stored_message(session: Session, account_id: uuid.UUID, header: str) -> Message | None:
    checked: dict[tuple[uuid.UUID, str], bool] = session.info.get(_CHECKED_IDS, {})
    if checked.get((account_id, header), True) is False:
        return None  # looked up for the whole batch under its locks, and no message of the batch stored it since
    return session.scalars(
        select(Message).where(Message.account_id == account_id, Message.message_id_header == header)
    ).one_or_none()


def _mails_of(analysis: Analysis) -> list[AnalysedMail]:
    return [analysis.message, *(original.analysed for original in analysis.originals)]


def _announce_persons(
    session: Session,
    account_id: uuid.UUID,
    message: StoredMessage,
    created: dict[str, uuid.UUID],
    rule: PersonRule | None,
) -> None:
    """Webhook events for the persons this message created, in its own transaction (they leave only if it
    commits)."""
    for address, person_id in sorted(created.items()):
        emit(
            session,
            account_id,
            PersonCreated(
                person_id=person_id,
                addresses=[address],
                created_from=CreatedFrom.email,
                created_by_rule=rule,
                created_by_message_id=message.id,
            ),
        )


def _announce_deals(
    session: Session, account_id: uuid.UUID, decided: list[DealDecided], stored: Mapping[uuid.UUID, StoredMessage]
) -> None:
    """Each stored message with the deal of its thread, and what the decision for its thread changed."""
    for item in decided:
        decision = item.decision
        message = stored[item.message_id]
        emit(
            session,
            account_id,
            MessageStored(message_id=message.id, thread_id=item.thread_id, kind=message.kind, deal_id=decision.deal_id),
        )
        if not item.deciding:
            continue
        if decision.outcome is DealOutcome.linked:
            emit(
                session,
                account_id,
                ThreadLinked(
                    thread_id=item.thread_id,
                    deal_id=decision.deal_id,
                    previous_deal_id=decision.previous_deal_id,
                    deal_rule=decision.rule,
                    linked_by_message_id=message.id,
                ),
            )
        if decision.outcome is DealOutcome.ask_user and decision.asked_anew and decision.disambiguation_id is not None:
            emit(
                session,
                account_id,
                DisambiguationCreated(disambiguation_id=decision.disambiguation_id, thread_id=item.thread_id),
            )


def _external_roles(parsed: ParsedMail, context: AccountContext) -> list[tuple[MessagePersonRole, Address]]:
    roles: list[tuple[MessagePersonRole, Address]] = []
    if parsed.sender is not None:
        roles.append((MessagePersonRole.from_, parsed.sender))
    roles.extend((MessagePersonRole.to, address) for address in parsed.to)
    roles.extend((MessagePersonRole.cc, address) for address in parsed.cc)
    return [(role, a) for role, a in roles if not context.is_internal(a.address)]


def _on_a_thread_of(session: Session, context: AccountContext, user_id: uuid.UUID, analysed: AnalysedMail) -> bool:
    """Does the message belong to a thread with mail of this user — by the ids it threads by (its references and
    Outlook's conversation id, exactly as threading uses them), or (without references) by subject, participant
    and time, as threading itself would join it?

    Its ids and subject names are locked first, so this check and a concurrent store of the user's message take
    turns: either we see that message, or it sees us held and releases us (`_release_waiting`).
    """
    parsed = analysed.mail
    subject_names = _subject_names(parsed, context)
    keys = set(analysed.thread_references) - {parsed.message_id}
    lock_names(
        session,
        context.account_id,
        [*(f"thread-key:{key}" for key in {parsed.message_id, *keys}), *subject_names],
    )
    threads: set[uuid.UUID] = set()
    if keys:
        threads |= set(
            session.scalars(
                select(ThreadKey.thread_id).where(
                    ThreadKey.account_id == context.account_id, ThreadKey.message_id_header.in_(keys)
                )
            ).all()
        )
    if not parsed.references:
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


@dataclass(frozen=True)
class _Release:
    """Held contact mail that a stored message may give a place: mail of `user_id` waiting for one of the ids of
    the message's thread, or (for reference-less mail) for its subject with one of its participants."""

    account_id: uuid.UUID
    user_id: uuid.UUID
    message_id: uuid.UUID
    subject_names: tuple[str, ...]

    @classmethod
    def of(
        cls, context: AccountContext, user_id: uuid.UUID, message: StoredMessage, analysed: AnalysedMail
    ) -> _Release:
        parsed = analysed.mail
        names = subject_lock_names(parsed.subject, _participants(parsed, context))
        return cls(context.account_id, user_id, message.id, tuple(names))


# The thread of each message is read at the end of the batch: a later message of the batch may have merged it.
_RELEASE_WAITING = DirectSql(
    "UPDATE inbound_messages SET status = 'received', hold_reason = NULL, held_references = NULL, attempts = 0,"
    " claimed_until = NULL"
    " WHERE account_id = :account_id AND user_id = :user_id AND status = 'held'"
    " AND held_references && (ARRAY(SELECT thread_keys.message_id_header FROM thread_keys"
    "  WHERE thread_keys.account_id = :account_id AND thread_keys.thread_id IN ("
    "   SELECT messages.thread_id FROM messages"
    "   WHERE messages.account_id = :account_id AND messages.id = ANY(CAST(:message_ids AS uuid[]))))"
    "  || CAST(:subject_names AS text[]))"
    " RETURNING id"
)


def _release_waiting(session: Session, releases: list[_Release]) -> list[uuid.UUID]:
    """Send back to the matcher the held mail that the batch's stored messages give a place: one statement per
    user of the batch, after the batch's own holds are written (a hold and its release may share a batch)."""
    by_user: dict[tuple[uuid.UUID, uuid.UUID], list[_Release]] = {}
    for release in releases:
        by_user.setdefault((release.account_id, release.user_id), []).append(release)
    released: list[uuid.UUID] = []
    for (account_id, user_id), of_user in by_user.items():
        released.extend(
            row.id
            for row in execute_direct(
                session,
                _RELEASE_WAITING,
                {
                    "account_id": account_id,
                    "user_id": user_id,
                    "message_ids": [release.message_id for release in of_user],
                    "subject_names": sorted({name for release in of_user for name in release.subject_names}),
                },
            )
        )
    return released


_FINISH = text(
    "UPDATE inbound_messages SET status = CAST(:status AS varchar), message_id = :message_id,"
    " hold_reason = :hold_reason, held_references = CAST(:held_references AS text[]), processed_at = now(),"
    " claimed_until = NULL, auth_summary = CAST(:auth_summary AS varchar), auth_results = :auth_results,"
    " last_error = CASE WHEN CAST(:status AS varchar) = 'processed' THEN NULL ELSE last_error END"
    " WHERE id = :id"
).bindparams(bindparam("auth_results", type_=JSONB))


def _finished_row(
    inbound: Inbound,
    status: InboundStatus,
    *,
    message_id: uuid.UUID | None = None,
    hold_reason: str | None = None,
    waiting_for: list[str] | None = None,
) -> dict[str, object]:
    """The row's outcome, with the sender checks this batch made (or those recorded before)."""
    return {
        "id": inbound.id,
        "status": status.value,
        "message_id": message_id,
        "hold_reason": hold_reason,
        "held_references": waiting_for,
        "auth_summary": None if inbound.auth_summary is None else inbound.auth_summary.value,
        "auth_results": inbound.auth_results,
    }


@dataclass(frozen=True)
class _Finished:
    inbound_id: uuid.UUID
    outcome: Outcome
    received_at: datetime
    row: dict[str, object]  # parameters of `_FINISH`
    event: str
    log_fields: dict[str, str]


@dataclass
class _BatchWork:
    """What the batch's messages leave for the end of the batch, before it commits."""

    releases: list[_Release] = field(default_factory=list)
    stored: dict[uuid.UUID, StoredMessage] = field(default_factory=dict)
    deals: dict[uuid.UUID, list[DealToDecide]] = field(default_factory=dict)  # by account, in batch order


@dataclass
class _Placed:
    """What a committed batch did."""

    finished: list[_Finished] = field(default_factory=list)
    released: list[uuid.UUID] = field(default_factory=list)
    already_done: list[uuid.UUID] = field(default_factory=list)


class _MessageFailedError(Exception):
    def __init__(self, inbound_id: uuid.UUID, error: Exception) -> None:
        super().__init__(str(error))
        self.inbound_id = inbound_id
        self.error = error
        self.why = f"{type(error).__name__}: {error}"[:500]


def _collect_sender_checks(
    checking: Mapping[uuid.UUID, Future[SenderAuthentication]], checks: dict[uuid.UUID, SenderAuthentication]
) -> None:
    """Wait for the batch's sender checks. One that raised fails its own message, as anything else that goes wrong
    while placing it would: the others keep their results for the batch's next try."""
    failure: _MessageFailedError | None = None
    for inbound_id, check in checking.items():
        try:
            checks[inbound_id] = check.result()
        except Exception as exc:
            failure = failure or _MessageFailedError(inbound_id, exc)
    if failure is not None:
        raise failure


def _mark_bounces(
    session: Session,
    context: AccountContext,
    inbound: Inbound,
    analysis: Analysis,
    message_id: uuid.UUID,
    authentication: SenderAuthentication | None,
) -> None:
    failed = trusted_bounce_recipients(session, context, inbound.user_id, analysis, authentication)
    if not failed:
        return
    session.execute(
        update(PersonEmail)
        .where(PersonEmail.account_id == context.account_id, PersonEmail.address.in_(failed))
        .values(bounced_at=datetime.now(UTC), bounce_message_id=message_id)
    )
