"""Which thread a message belongs to: RFC 5322 Message-ID / In-Reply-To / References the JWZ way, then the subject.

A thread is a connected component of messages, and two messages are connected when

* they share an id (`ThreadKey`): the Message-ID of one appears in the other's References or In-Reply-To, or
  both reference the same id — even one that never arrives (JWZ's empty containers), so a parent that comes
  after its reply joins the reply's thread and a message that references two threads merges them; or
* at least one of them has no references at all (a client that drops them, an inline forward, Outlook's
  `Thread-Index`-only mail) and they have the same specific normalized subject (see `subjects`), share an
  external participant and were sent at most `SUBJECT_WINDOW` apart.

Both relations only look at the two messages themselves, never at what their threads have gathered so far, so
the components — and therefore the threads — are the same whatever order messages arrive in. Every message
finds all its connections among the messages already stored, under advisory locks that every other message
it could connect to also takes (its ids; its subject with each participant), so two workers that would connect
take turns and the second one sees the first. Threads only ever merge, never split: a message that a later
message connects to is never taken out of its thread again, which is why reference loops and RFC 5256's
order-dependent loop breaking do not apply.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Uuid, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, make_transient_to_detached

from services.matcher.mail.subjects import normalize_subject, subject_key
from services.matcher.placement.account import AccountContext, load_account
from services.matcher.placement.rows import THREAD_KEYS, THREAD_PARTICIPANTS, THREADS, insert_later
from shared.addresses import normalize_address
from shared.db import DirectSql, execute_direct
from shared.locks import lock_names
from shared.models import Message, Thread, ThreadKey, ThreadParticipant

# How far apart two messages may be sent and still be joined by subject alone: long enough for a slow reply,
# short enough that next quarter's "Invoice" is not this quarter's.
SUBJECT_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class _Arrival:
    message_id: str
    keys: tuple[str, ...]
    has_references: bool
    subject: str | None
    subject_key: str | None
    sent_at: datetime | None
    at: datetime  # sent_at, or now for mail without a usable Date
    participants: frozenset[str]


def assign_thread(
    session: Session,
    account_id: uuid.UUID,
    *,
    message_id: str,
    references: tuple[str, ...],
    subject: str | None,
    sent_at: datetime | None,
    participants: frozenset[str] = frozenset(),
    context: AccountContext | None = None,
    ids_locked: bool = False,
) -> Thread:
    """The thread of a message, locked by (or new in) this transaction; `participants` are its external addresses,
    normalized.

    Must run in the transaction that stores the message (the `Message` row is what later messages find), after
    the caller took the `thread-key:` locks of the message's ids (the pipeline does, for its duplicate check).
    """
    participants = frozenset(normalize_address(p) for p in participants if p.strip())
    keys = tuple(sorted({message_id, *references}))
    arrival = _Arrival(
        message_id=message_id,
        keys=keys,
        has_references=bool(set(references) - {message_id}),
        subject=subject,
        subject_key=subject_key(subject),
        sent_at=sent_at,
        at=sent_at if sent_at is not None else _now(session),
        participants=participants,
    )
    # Ids first, then subjects: every worker takes its locks in this order, each group sorted, so none can wait
    # for a lock that a worker waiting for one of its own holds.
    if not ids_locked:  # the pipeline takes them before its duplicate check; another round trip would be a no-op
        lock_names(session, account_id, (f"thread-key:{key}" for key in keys))
    if arrival.subject_key is not None:
        lock_names(session, account_id, _subject_lock_names(arrival.subject_key, participants))

    context = context if context is not None else load_account(session, account_id)
    threads = _lock_connected_threads(session, account_id, arrival, context)
    if not threads:
        thread = _new_thread(session, account_id, arrival)
    else:
        thread = _merge(session, account_id, threads)
        _record(session, account_id, thread, arrival)
    prefetched = _prefetched(session, account_id)
    if prefetched is not None:
        prefetched.note_written(arrival, {thread.id, *(t.id for t in threads)})
    return thread


def subject_lock_names(subject: str | None, participants: frozenset[str]) -> list[str]:
    """The names a message locks (and, when held, waits on) for joining threads by subject; [] when it cannot."""
    key = subject_key(subject)
    if key is None:
        return []
    return _subject_lock_names(key, frozenset(normalize_address(p) for p in participants if p.strip()))


def threads_joined_by_subject(
    session: Session,
    context: AccountContext,
    *,
    subject: str | None,
    sent_at: datetime | None,
    participants: frozenset[str],
) -> set[uuid.UUID]:
    """The threads a reference-less message would join by subject, participant and time (without joining)."""
    key = subject_key(subject)
    if key is None:
        return set()
    arrival = _Arrival(
        message_id="",
        keys=(),
        has_references=False,
        subject=subject,
        subject_key=key,
        sent_at=sent_at,
        at=sent_at if sent_at is not None else _now(session),
        participants=frozenset(normalize_address(p) for p in participants if p.strip()),
    )
    return _subject_threads(session, context.account_id, arrival, context)


def _subject_lock_names(key: str, participants: frozenset[str]) -> list[str]:
    # Two messages can only be joined by subject if they share a participant (or both have none), so a lock per
    # (subject, participant) is enough to make them take turns, without serializing every "Invoice" in the account.
    if not participants:
        return [f"thread-subject:{key}\t"]
    return [f"thread-subject:{key}\t{participant}" for participant in participants]


def _lock_connected_threads(
    session: Session, account_id: uuid.UUID, arrival: _Arrival, context: AccountContext
) -> list[Thread]:
    """Every thread the message connects to, locked; re-read when a concurrent merge folded one away."""
    prefetched = _prefetched(session, account_id)
    while True:
        # The batch's look-up first; after a concurrent merge, Postgres itself (the look-up is older than it).
        thread_ids = _connected_thread_ids(session, account_id, arrival, context, prefetched)
        prefetched = None
        if not thread_ids:
            return []
        threads = list(
            session.scalars(
                select(Thread)
                .where(Thread.account_id == account_id, Thread.id.in_(thread_ids))
                .order_by(Thread.id)
                .with_for_update()
            ).all()
        )
        # A merge moves ids and messages only while holding both threads' row locks, so once we hold these rows,
        # what we read about them stays true until we commit.
        if len(threads) == len(thread_ids):
            return threads


class _Candidate(NamedTuple):
    """A thread a message may connect to: through one of its ids, or (with that message's addresses, for the
    participant test) through a message with its subject."""

    thread_id: uuid.UUID
    by_key: bool
    from_address: str | None
    to: list[dict[str, Any]] | None
    cc: list[dict[str, Any]] | None


# The threads holding one of a message's ids, and (in the same round trip) the messages it may be joined to by
# subject: same subject key, sent within the window, with a shared participant (a thread's participants include
# every message's, so that narrows the search without missing any). References are trusted over subjects: two
# messages that both have them connect only through them. One fixed text, so Postgres plans it once per connection.
_CONNECTED = DirectSql(
    'SELECT thread_id, true AS by_key, CAST(NULL AS text) AS from_address, CAST(NULL AS jsonb) AS "to",'
    " CAST(NULL AS jsonb) AS cc"
    " FROM thread_keys WHERE account_id = :account_id AND message_id_header = ANY(CAST(:keys AS text[]))"
    " UNION ALL"
    ' SELECT thread_id, false, from_address, "to", cc FROM messages'
    " WHERE CAST(:subject_key AS text) IS NOT NULL AND account_id = :account_id"
    " AND subject_key = CAST(:subject_key AS text)"
    " AND coalesce(sent_at, created_at) BETWEEN :earliest AND :latest"
    ' AND (NOT :has_references OR cardinality("references") = 0)'
    " AND (cardinality(CAST(:participants AS text[])) = 0 OR thread_id IN ("
    "  SELECT thread_id FROM thread_participants"
    "  WHERE account_id = :account_id AND address = ANY(CAST(:participants AS text[]))))"
)


def _connected_thread_ids(
    session: Session,
    account_id: uuid.UUID,
    arrival: _Arrival,
    context: AccountContext,
    prefetched: _Prefetched | None,
) -> set[uuid.UUID]:
    rows = prefetched.candidates(arrival) if prefetched is not None else None
    if rows is None:
        rows = _candidates(_connected_rows(session, account_id, arrival, keys=arrival.keys))
    connected = {row.thread_id for row in rows if row.by_key}
    return connected | _joined_by_subject([row for row in rows if not row.by_key], arrival, context)


def _subject_threads(
    session: Session, account_id: uuid.UUID, arrival: _Arrival, context: AccountContext
) -> set[uuid.UUID]:
    """Threads holding a message this one is joined to by subject, participant and time."""
    rows = _connected_rows(session, account_id, arrival, keys=())
    return _joined_by_subject(_candidates(rows), arrival, context)


def _connected_rows(
    session: Session, account_id: uuid.UUID, arrival: _Arrival, *, keys: tuple[str, ...]
) -> list[Any]:  # named tuples (see execute_direct)
    return execute_direct(
        session,
        _CONNECTED,
        {
            "account_id": account_id,
            "keys": list(keys),
            "subject_key": arrival.subject_key,
            "earliest": arrival.at - SUBJECT_WINDOW,
            "latest": arrival.at + SUBJECT_WINDOW,
            "has_references": arrival.has_references,
            "participants": sorted(arrival.participants),
        },
    ).fetchall()


def _candidates(rows: Iterable[Any]) -> list[_Candidate]:
    return [_Candidate(row.thread_id, row.by_key, row.from_address, row.to, row.cc) for row in rows]


def _joined_by_subject(rows: Iterable[_Candidate], arrival: _Arrival, context: AccountContext) -> set[uuid.UUID]:
    # The other message's external participants, worked out as the pipeline worked out this one's, so that the
    # test is symmetric and it does not matter which of the two arrives second.
    found: set[uuid.UUID] = set()
    for row in rows:
        if row.thread_id in found:
            continue
        theirs = {
            context.canonical(a)
            for a in _addresses(row.from_address, row.to or [], row.cc or [])
            if not context.is_internal(a)
        }
        # Mail with nobody outside the account (notes to self, colleagues) is "with the same people" as its like.
        if theirs & arrival.participants if arrival.participants else not theirs:
            found.add(row.thread_id)
    return found


# What `_CONNECTED` finds, for every message of a batch in one round trip: the threads of all their ids, the
# messages with one of their subjects in the window of any of them, and those messages' threads' participants
# among all of theirs. `candidates` then answers each message exactly as `_CONNECTED` would have.
_BATCH_CONNECTED = DirectSql(
    'WITH by_subject AS (SELECT thread_id, subject_key, from_address, "to", cc,'
    ' coalesce(sent_at, created_at) AS at, cardinality("references") = 0 AS without_references FROM messages'
    " WHERE account_id = :account_id AND subject_key = ANY(CAST(:subject_keys AS text[]))"
    " AND coalesce(sent_at, created_at) BETWEEN :earliest AND :latest)"
    " SELECT 'key' AS kind, thread_id, message_id_header AS value, CAST(NULL AS text) AS from_address,"
    ' CAST(NULL AS jsonb) AS "to", CAST(NULL AS jsonb) AS cc, CAST(NULL AS timestamptz) AS at,'
    " CAST(NULL AS boolean) AS without_references"
    " FROM thread_keys WHERE account_id = :account_id AND message_id_header = ANY(CAST(:keys AS text[]))"
    " UNION ALL"
    " SELECT 'subject', thread_id, subject_key, from_address, \"to\", cc, at, without_references FROM by_subject"
    " UNION ALL"
    " SELECT 'participant', thread_id, address, NULL, NULL, NULL, NULL, NULL FROM thread_participants"
    " WHERE account_id = :account_id AND address = ANY(CAST(:participants AS text[]))"
    " AND thread_id IN (SELECT thread_id FROM by_subject)"
)
_PREFETCHED = "mailroom.thread_connections"  # account → _Prefetched, for the transaction of one batch


@dataclass
class _SubjectRow:
    candidate: _Candidate
    at: datetime
    without_references: bool


@dataclass
class _Prefetched:
    """The batch's connections as they were once it held its locks, and what the batch has written since."""

    keys: frozenset[str]
    subject_keys: frozenset[str]
    participants: frozenset[str]
    earliest: datetime
    latest: datetime
    threads_by_key: dict[str, uuid.UUID] = field(default_factory=dict)
    by_subject: dict[str, list[_SubjectRow]] = field(default_factory=dict)
    thread_participants: dict[uuid.UUID, set[str]] = field(default_factory=dict)
    written_keys: set[str] = field(default_factory=set)
    written_subject_keys: set[str] = field(default_factory=set)
    written_threads: set[uuid.UUID] = field(default_factory=set)

    def candidates(self, arrival: _Arrival) -> list[_Candidate] | None:
        """What `_CONNECTED` would return for the message, or None when the prefetch cannot say: it did not
        look for all of the message's ids, subject, window or participants, or the batch has since written
        something the answer depends on (its ids, its subject, or one of the threads it would find)."""
        keys = set(arrival.keys)
        if not keys <= self.keys or keys & self.written_keys or not arrival.participants <= self.participants:
            return None
        found = [
            _Candidate(self.threads_by_key[key], True, None, None, None) for key in keys if key in self.threads_by_key
        ]
        subject_key = arrival.subject_key
        if subject_key is not None:
            earliest, latest = arrival.at - SUBJECT_WINDOW, arrival.at + SUBJECT_WINDOW
            if subject_key not in self.subject_keys or subject_key in self.written_subject_keys:
                return None
            if earliest < self.earliest or latest > self.latest:
                return None
            for row in self.by_subject.get(subject_key, []):
                if row.candidate.thread_id in self.written_threads:
                    return None
                if not earliest <= row.at <= latest:
                    continue
                if arrival.has_references and not row.without_references:
                    continue
                if arrival.participants and not arrival.participants & self.thread_participants.get(
                    row.candidate.thread_id, set()
                ):
                    continue
                found.append(row.candidate)
        if any(candidate.thread_id in self.written_threads for candidate in found):
            return None
        return found

    def note_written(self, arrival: _Arrival, threads: set[uuid.UUID]) -> None:
        """The message joined (or made, or merged) `threads` and gave them its ids, subject and participants."""
        self.written_keys.update(arrival.keys)
        if arrival.subject_key is not None:
            self.written_subject_keys.add(arrival.subject_key)
        self.written_threads.update(threads)


def prefetch_connections(
    session: Session,
    account_id: uuid.UUID,
    mails: Iterable[tuple[Iterable[str], str | None, datetime | None, Iterable[str]]],
) -> set[str]:
    """Look up, in one round trip, what the batch's messages (ids, subject, sent at, external participants) connect
    to, for `assign_thread` to use instead of a query per message. Call once the batch holds all its locks: only
    the batch itself can then change what its messages connect to, and it keeps track of what it writes.

    Returns the ids that are thread keys already. A stored message's own id always is one (`assign_thread`
    records it with its thread), so an id that is not was never stored."""
    keys: set[str] = set()
    subject_keys: set[str] = set()
    participants: set[str] = set()
    moments: list[datetime] = []
    undated = False
    for ids, subject, sent_at, addresses in mails:
        keys.update(ids)
        participants.update(normalize_address(address) for address in addresses if address.strip())
        key = subject_key(subject)
        if key is not None:
            subject_keys.add(key)
            if sent_at is None:
                undated = True  # `assign_thread` places it at the transaction's start
            else:
                moments.append(sent_at)
    if undated:
        moments.append(_now(session))
    earliest = min(moments, default=datetime.now().astimezone()) - SUBJECT_WINDOW
    latest = max(moments, default=datetime.now().astimezone()) + SUBJECT_WINDOW
    prefetched = _Prefetched(frozenset(keys), frozenset(subject_keys), frozenset(participants), earliest, latest)
    rows = execute_direct(
        session,
        _BATCH_CONNECTED,
        {
            "account_id": account_id,
            "keys": sorted(keys),
            "subject_keys": sorted(subject_keys),
            "participants": sorted(participants),
            "earliest": earliest,
            "latest": latest,
        },
    ).fetchall()
    for row in rows:
        if row.kind == "key":
            prefetched.threads_by_key[row.value] = row.thread_id
        elif row.kind == "subject":
            candidate = _Candidate(row.thread_id, False, row.from_address, row.to, row.cc)
            prefetched.by_subject.setdefault(row.value, []).append(
                _SubjectRow(candidate, row.at, row.without_references)
            )
        else:
            prefetched.thread_participants.setdefault(row.thread_id, set()).add(row.value)
    session.info.setdefault(_PREFETCHED, {})[account_id] = prefetched
    return set(prefetched.threads_by_key)


def _prefetched(session: Session, account_id: uuid.UUID) -> _Prefetched | None:
    found: dict[uuid.UUID, _Prefetched] = session.info.get(_PREFETCHED, {})
    return found.get(account_id)


def _now(session: Session) -> datetime:
    """When the transaction started: where mail without a usable Date is placed in time."""
    return session.scalar(select(func.now())) or datetime.now().astimezone()


def _addresses(from_address: str | None, to: Iterable[dict[str, Any]], cc: Iterable[dict[str, Any]]) -> list[str]:
    addresses = [str(entry.get("address") or "") for entry in [*to, *cc]]
    if from_address:
        addresses.append(from_address)
    return [address for address in addresses if address.strip()]


def _new_thread(session: Session, account_id: uuid.UUID, arrival: _Arrival) -> Thread:
    """A thread born with this message's ids, participants, subject and dates, inserted with the batch's next
    statement; the object joins the session as already stored, so that the deal decision can change it without
    reading it back (the insert goes first)."""
    thread = Thread(
        id=uuid.uuid4(),
        account_id=account_id,
        subject=arrival.subject,
        normalized_subject=normalize_subject(arrival.subject) or None,
        first_message_at=arrival.sent_at,
        last_message_at=arrival.sent_at,
        deal_id=None,
        deal_rule=None,
        deal_linked_by_message_id=None,
        lead_id=None,
    )
    insert_later(
        session,
        THREADS,
        [
            {
                "id": thread.id,
                "account_id": account_id,
                "subject": thread.subject,
                "normalized_subject": thread.normalized_subject,
                "first_message_at": arrival.sent_at,
                "last_message_at": arrival.sent_at,
            }
        ],
    )
    _add_keys_and_participants(session, account_id, thread.id, arrival)
    make_transient_to_detached(thread)
    session.add(thread)
    return thread


def _record(session: Session, account_id: uuid.UUID, thread: Thread, arrival: _Arrival) -> None:
    """Remember the message's ids and participants on its thread; keep the thread's subject and dates."""
    _add_keys_and_participants(session, account_id, thread.id, arrival)
    if _first_key(arrival.sent_at, arrival.subject) < _first_key(thread.first_message_at, thread.subject):
        thread.subject = arrival.subject
        thread.normalized_subject = normalize_subject(arrival.subject) or None
    if arrival.sent_at is not None:
        if thread.first_message_at is None or arrival.sent_at < thread.first_message_at:
            thread.first_message_at = arrival.sent_at
        if thread.last_message_at is None or arrival.sent_at > thread.last_message_at:
            thread.last_message_at = arrival.sent_at


def _add_keys_and_participants(
    session: Session, account_id: uuid.UUID, thread_id: uuid.UUID, arrival: _Arrival
) -> None:
    insert_later(
        session,
        THREAD_KEYS,
        [{"account_id": account_id, "message_id_header": key, "thread_id": thread_id} for key in arrival.keys],
    )
    insert_later(
        session,
        THREAD_PARTICIPANTS,
        [
            {"account_id": account_id, "thread_id": thread_id, "address": address}
            for address in sorted(arrival.participants)
        ],
    )


def _first_key(sent_at: datetime | None, subject: str | None) -> tuple[bool, datetime | None, bool, str]:
    """Orders candidates for "the thread's first message": earliest dated, then by subject, so the thread's
    subject does not depend on arrival order either. An empty thread sorts last."""
    return (sent_at is None, sent_at, subject is None, subject or "")


def _merge(session: Session, account_id: uuid.UUID, threads: list[Thread]) -> Thread:
    """Fold locked threads into one survivor: ids, messages and participants move, the earliest subject stays."""
    # The survivor keeps a deal link if one exists (a user's choice must not be lost), else the oldest wins.
    survivor = min(threads, key=lambda t: (t.deal_id is None, t.created_at, t.id))
    losers = [t for t in threads if t.id != survivor.id]
    if not losers:
        return survivor
    loser_ids = [t.id for t in losers]
    session.execute(
        update(ThreadKey)
        .where(ThreadKey.account_id == account_id, ThreadKey.thread_id.in_(loser_ids))
        .values(thread_id=survivor.id)
    )
    session.execute(
        update(Message)
        .where(Message.account_id == account_id, Message.thread_id.in_(loser_ids))
        .values(thread_id=survivor.id)
    )
    session.execute(
        insert(ThreadParticipant)
        .from_select(
            ["account_id", "thread_id", "address"],
            select(ThreadParticipant.account_id, literal(survivor.id, Uuid), ThreadParticipant.address).where(
                ThreadParticipant.account_id == account_id, ThreadParticipant.thread_id.in_(loser_ids)
            ),
        )
        .on_conflict_do_nothing()
    )
    first = min(threads, key=lambda t: _first_key(t.first_message_at, t.subject))
    survivor.subject, survivor.normalized_subject = first.subject, first.normalized_subject
    firsts = [t.first_message_at for t in threads if t.first_message_at is not None]
    lasts = [t.last_message_at for t in threads if t.last_message_at is not None]
    survivor.first_message_at = min(firsts) if firsts else None
    survivor.last_message_at = max(lasts) if lasts else None
    session.execute(delete(Thread).where(Thread.account_id == account_id, Thread.id.in_(loser_ids)))
    return survivor
