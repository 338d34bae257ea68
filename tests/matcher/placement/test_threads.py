"""Threads through the real matcher on real Postgres: references the JWZ way, the subject fallback, and the
promise that the same messages give the same threads whatever order and however many workers they arrive in."""

from __future__ import annotations

import base64
import multiprocessing
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.pipeline import Matcher, Outcome
from services.matcher.placement.threads import assign_thread, prefetch_connections
from shared.blobstore import LocalBlobStore
from shared.db import make_engine, make_session_factory, transaction
from shared.models import InboundMessage, InboundStatus, Message, Thread, ThreadParticipant
from tests.conftest import Infra, Tenant, new_tenant
from tests.matcher.conftest import receive
from tests.support.stack import make_mail

Sessions = sessionmaker[Session]
Partition = frozenset[frozenset[str]]

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ALICE = "alice@client.example"
BOB = "bob@other.example"
CAROL = "carol@third.example"


@dataclass(frozen=True)
class Mail:
    """A message the user sent (Smart-BCC copy): always stored, so threading decides alone where it goes."""

    message_id: str
    subject: str
    to: tuple[str, ...]
    references: tuple[str, ...] = ()
    hours: float = 0

    def raw(self, tenant: Tenant) -> bytes:
        mail = make_mail(
            sender=tenant.user_email,
            to=list(self.to),
            subject=self.subject,
            message_id=f"<{self.message_id}>",
            references=[f"<{ref}>" for ref in self.references] or None,
            in_reply_to=f"<{self.references[-1]}>" if self.references else None,
            date=format_datetime(T0 + timedelta(hours=self.hours)),
        )
        return mail.as_bytes()


def deliver(matcher: Matcher, sessions: Sessions, tenant: Tenant, mails: Iterable[Mail]) -> None:
    for mail in mails:
        outcome = matcher.process(receive(sessions, tenant, mail.raw(tenant)))
        assert outcome in (Outcome.stored, Outcome.duplicate)


def partition(sessions: Sessions, tenant: Tenant) -> Partition:
    with sessions() as session:
        rows = session.execute(
            select(Message.message_id_header, Message.thread_id).where(Message.account_id == tenant.account_id)
        ).all()
    threads: dict[uuid.UUID, set[str]] = {}
    for row in rows:
        threads.setdefault(row.thread_id, set()).add(row.message_id_header)
    return frozenset(frozenset(ids) for ids in threads.values())


def blocks(*groups: Iterable[str]) -> Partition:
    return frozenset(frozenset(group) for group in groups)


def thread_of(sessions: Sessions, tenant: Tenant, message_id: str) -> Thread:
    with sessions() as session:
        return session.scalars(
            select(Thread)
            .join(Message, Message.thread_id == Thread.id)
            .where(Message.account_id == tenant.account_id, Message.message_id_header == message_id)
        ).one()


def participants(sessions: Sessions, thread_id: uuid.UUID) -> set[str]:
    with sessions() as session:
        return set(session.scalars(select(ThreadParticipant.address).where(ThreadParticipant.thread_id == thread_id)))


# --- references ------------------------------------------------------------------------------------------------


def test_a_parent_that_arrives_after_its_reply_joins_the_replys_thread(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    deliver(
        matcher,
        quiet_sessions,
        quiet_tenant,
        [
            Mail("c@x", "Re: Renewal", (ALICE,), references=("a@x", "b@x"), hours=2),
            Mail("a@x", "Renewal", (ALICE,)),
            Mail("b@x", "Re: Renewal", (ALICE,), references=("a@x",), hours=1),
        ],
    )
    assert partition(quiet_sessions, quiet_tenant) == blocks({"a@x", "b@x", "c@x"})


def test_a_message_that_references_two_threads_merges_them_with_their_dates_and_participants(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    deliver(
        matcher,
        quiet_sessions,
        quiet_tenant,
        [
            Mail("a@x", "Renewal", (ALICE,), hours=5),
            Mail("b@x", "Pricing", (BOB,), hours=1),
            Mail("m@x", "Re: Renewal and pricing", (ALICE, BOB), references=("a@x", "b@x"), hours=9),
        ],
    )
    assert partition(quiet_sessions, quiet_tenant) == blocks({"a@x", "b@x", "m@x"})
    thread = thread_of(quiet_sessions, quiet_tenant, "a@x")
    assert thread.first_message_at == T0 + timedelta(hours=1)
    assert thread.last_message_at == T0 + timedelta(hours=9)
    # The thread is named after its first message, whichever thread survived the merge.
    assert (thread.subject, thread.normalized_subject) == ("Pricing", "pricing")
    assert participants(quiet_sessions, thread.id) == {ALICE, BOB}
    with quiet_sessions() as session:
        assert session.scalars(select(Thread.id).where(Thread.account_id == quiet_tenant.account_id)).all() == [
            thread.id
        ]


def test_a_batch_whose_look_up_a_concurrent_merge_made_stale_finds_the_merged_thread(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    account_id = quiet_tenant.account_id
    deliver(matcher, quiet_sessions, quiet_tenant, [Mail("a@x", "Renewal", (ALICE,)), Mail("b@x", "Pricing", (BOB,))])
    reply_at = T0 + timedelta(hours=3)
    with transaction(quiet_sessions) as session:
        # A batch looked up what its reply to b@x connects to: b@x's thread.
        prefetch_connections(session, account_id, [({"c@x", "b@x"}, "Re: Pricing", reply_at, frozenset({BOB}))])
        # Before it places the reply, another worker merges b@x's thread into a@x's (the older one survives).
        merging = Mail("m@x", "Both", (ALICE, BOB), references=("a@x", "b@x"), hours=2)
        deliver(matcher, quiet_sessions, quiet_tenant, [merging])
        thread = assign_thread(
            session,
            account_id,
            message_id="c@x",
            references=("b@x",),
            subject="Re: Pricing",
            sent_at=reply_at,
            participants=frozenset({BOB}),
        )
        assert thread.id == thread_of(quiet_sessions, quiet_tenant, "a@x").id


def test_reference_loops_and_duplicate_message_ids_do_not_break_anything(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    deliver(
        matcher,
        quiet_sessions,
        quiet_tenant,
        [
            Mail("l1@x", "Loop", (ALICE,), references=("l2@x",)),
            Mail("l2@x", "Re: Loop", (ALICE,), references=("l1@x",)),
            Mail("l3@x", "Re: Loop", (ALICE,), references=("l3@x", "l1@x")),  # references itself too
            Mail("l2@x", "Re: Loop", (ALICE,), references=("l1@x",)),  # BCC'd twice
        ],
    )
    assert partition(quiet_sessions, quiet_tenant) == blocks({"l1@x", "l2@x", "l3@x"})


# --- the subject fallback --------------------------------------------------------------------------------------


def test_mail_without_references_joins_by_subject_participant_and_time(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    deliver(
        matcher,
        quiet_sessions,
        quiet_tenant,
        [
            Mail("a@x", "Contract draft", (ALICE,)),
            Mail("b@x", "RE: AW: [EXT] Contract draft", (ALICE, CAROL), hours=30),  # client dropped references
            Mail("c@x", "Re: Contract draft", (CAROL,), hours=60),  # shares Carol with b
            Mail("d@x", "Contract draft", (BOB,), hours=2),  # nobody in common
            Mail("e@x", "Contract draft - second version", (ALICE,), hours=3),  # a changed subject
            Mail("f@x", "Re: Contract draft", (ALICE,), hours=24 * 75),  # months later
        ],
    )
    assert partition(quiet_sessions, quiet_tenant) == blocks({"a@x", "b@x", "c@x"}, {"d@x"}, {"e@x"}, {"f@x"})
    thread = thread_of(quiet_sessions, quiet_tenant, "c@x")
    assert thread.normalized_subject == "contract draft"
    assert participants(quiet_sessions, thread.id) == {ALICE, CAROL}


def test_generic_subjects_do_not_join_mail_without_references(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    deliver(
        matcher,
        quiet_sessions,
        quiet_tenant,
        [
            Mail("a@x", "Hi", (ALICE,)),
            Mail("b@x", "Re: hi", (ALICE,), hours=1),
            Mail("c@x", "Question", (ALICE,), hours=2),
            Mail("d@x", "Re: Question", (ALICE,), hours=3),
            Mail("e@x", "", (ALICE,), hours=4),
            Mail("f@x", "", (ALICE,), hours=5),
        ],
    )
    assert len(partition(quiet_sessions, quiet_tenant)) == 6


def test_two_messages_with_references_never_join_by_subject_alone(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    deliver(
        matcher,
        quiet_sessions,
        quiet_tenant,
        [
            Mail("b@x", "Re: Invoice 7", (ALICE,), references=("a@x",)),
            Mail("d@x", "Re: Invoice 7", (ALICE,), references=("c@x",), hours=1),
            # Without references it belongs to both: they are one conversation after all.
            Mail("e@x", "Invoice 7", (ALICE,), hours=2),
        ],
    )
    assert partition(quiet_sessions, quiet_tenant) == blocks({"b@x", "d@x", "e@x"})


@pytest.mark.parametrize("tagged_first", [True, False])
def test_participants_are_compared_as_the_account_keys_people(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant, tagged_first: bool
) -> None:
    tagged = Mail("a@x", "Site visit", ("Alice <alice+crm@client.example>",))
    plain = Mail("b@x", "Re: Site visit", ("ALICE@client.example",), hours=1)
    deliver(matcher, quiet_sessions, quiet_tenant, [tagged, plain] if tagged_first else [plain, tagged])
    assert partition(quiet_sessions, quiet_tenant) == blocks({"a@x", "b@x"})


# --- order independence ----------------------------------------------------------------------------------------

# Late parents, a merge, a loop, a duplicate, subject-only messages before and after their thread, two
# reference-less messages with one subject, a reply with references that only the subject connects to its
# root, generic and changed subjects, and a subject match that only a later merge brings to the same people.
SCENARIO: tuple[Mail, ...] = (
    Mail("a1@x", "Proposal for Q3", (ALICE,)),
    Mail("a2@x", "Re: Proposal for Q3", (ALICE,), references=("a1@x",), hours=1),
    Mail("a3@x", "Re: Proposal for Q3", (ALICE,), references=("a1@x", "a2@x"), hours=2),
    Mail("b1@x", "Pricing", (BOB,), hours=1),
    Mail("b2@x", "Re: Pricing", (BOB,), references=("ghost@x",), hours=3),
    Mail("m1@x", "Re: Proposal and pricing", (ALICE, BOB), references=("a3@x", "b1@x"), hours=4),
    Mail("s1@x", "RE: Proposal for Q3", (ALICE,), hours=5),
    Mail("s2@x", "Contract draft", (CAROL,), hours=6),
    Mail("s3@x", "Fwd: Contract draft", (CAROL,), hours=30),
    Mail("g1@x", "Hi", (ALICE,), hours=7),
    Mail("g2@x", "Hi", (ALICE,), hours=8),
    Mail("c1@x", "Proposal for Q3 - revised", (ALICE,), hours=9),
    Mail("d1@x", "Proposal for Q3", ("dave@fourth.example",), hours=10),
    Mail("l1@x", "Loop", (CAROL,), references=("l2@x",), hours=11),
    Mail("l2@x", "Re: Loop", (CAROL,), references=("l1@x",), hours=12),
    Mail("l2@x", "Re: Loop", (CAROL,), references=("l1@x",), hours=12),
    Mail("o1@x", "Contract draft", (CAROL,), hours=24 * 80),
    Mail("x1@x", "Pricing", (CAROL,), hours=13),
    Mail("x2@x", "Budget", (CAROL, BOB), references=("b2@x",), hours=14),
)
SCENARIO_THREADS = blocks(
    {"a1@x", "a2@x", "a3@x", "b1@x", "b2@x", "m1@x", "s1@x", "x2@x"},
    {"s2@x", "s3@x"},
    {"g1@x"},
    {"g2@x"},
    {"c1@x"},
    {"d1@x"},
    {"l1@x", "l2@x"},
    {"o1@x"},
    {"x1@x"},
)


def test_the_scenario_threads_as_designed(matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant) -> None:
    deliver(matcher, quiet_sessions, quiet_tenant, SCENARIO)
    assert partition(quiet_sessions, quiet_tenant) == SCENARIO_THREADS


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(SCENARIO))
def test_any_arrival_order_gives_the_same_threads(
    matcher: Matcher, quiet_sessions: Sessions, order: Sequence[Mail]
) -> None:
    tenant = new_tenant(quiet_sessions)
    deliver(matcher, quiet_sessions, tenant, order)
    assert partition(quiet_sessions, tenant) == SCENARIO_THREADS


def conversations(count: int = 6, pairs: int = 5) -> list[list[Mail]]:
    """Conversations of five: a root, two reference-less follow-ups (clients that drop references), a reply with
    references; every other pair of conversations merged by one message that references both. And pairs of
    reference-less messages that only their subject connects: nothing later heals a link missed between them."""
    people = [f"p{n}@client{n}.example" for n in range(count)]
    result: list[list[Mail]] = []
    for n, person in enumerate(people):
        topic = f"Topic {n} planning"
        root = f"t{n}-0@x"
        mails = [
            Mail(root, topic, (person,), hours=n),
            Mail(f"t{n}-1@x", f"Re: {topic}", (person,), hours=n + 1),
            Mail(f"t{n}-2@x", f"AW: {topic}", (person,), hours=n + 2),
            Mail(f"t{n}-3@x", f"Re: {topic}", (person,), references=(root, f"t{n}-missing@x"), hours=n + 3),
        ]
        if n % 2:
            mails.append(
                Mail(f"t{n}-m@x", "Both", (person, people[n - 1]), references=(f"t{n - 1}-3@x", root), hours=n + 4)
            )
        else:
            mails.append(Mail(f"t{n}-g@x", "Hello", (person,), hours=n + 4))
        result.append(mails)
    for n in range(pairs):
        person = f"q{n}@pair{n}.example"
        result.append(
            [
                Mail(f"q{n}-0@x", f"Order {n} delivery", (person,)),
                Mail(f"q{n}-1@x", f"Re: Order {n} delivery", (person,)),
            ]
        )
    return result


def _process_share(database_url: str, blobs: str, inbound_ids: list[str], start: object, batch_size: int) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        matcher = Matcher(
            sessions=make_session_factory(engine), blobs=LocalBlobStore(Path(blobs)), batch_size=batch_size
        )
        start.wait()  # type: ignore[attr-defined]
        for inbound_id in inbound_ids:
            # As the actor does for a queue message of one id (the sweep's, a release's).
            matcher.process_due([uuid.UUID(inbound_id)])
    finally:
        engine.dispose()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_give_the_threads_of_one_message_at_a_time(
    matcher: Matcher, quiet_sessions: Sessions, tmp_path: Path, seed: int
) -> None:
    """A batch looks up what its messages connect to once, then places them one after another: a message that
    connects to one placed earlier in its batch (a reply, a subject-only follow-up, a merge) must still find it."""
    talks = conversations()
    sequential = new_tenant(quiet_sessions)
    deliver(matcher, quiet_sessions, sequential, [mail for talk in talks for mail in talk])

    mails = [mail for talk in talks for mail in talk]
    random.Random(seed).shuffle(mails)
    batched = new_tenant(quiet_sessions)
    inbound_ids = [receive(quiet_sessions, batched, mail.raw(batched)) for mail in mails]
    in_batches = Matcher(sessions=quiet_sessions, blobs=LocalBlobStore(tmp_path / "blobs"), batch_size=7)
    # As the queue delivers them, in groups the gateway committed together (longer ones placed a batch at a time).
    for start in range(0, len(inbound_ids), 10):
        outcomes = in_batches.process_due(inbound_ids[start : start + 10])
        assert set(outcomes.values()) <= {Outcome.stored, Outcome.duplicate, Outcome.already_done}
    assert partition(quiet_sessions, batched) == partition(quiet_sessions, sequential)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_several_worker_processes_give_the_threads_of_one(
    infra: Infra, matcher: Matcher, quiet_sessions: Sessions, tmp_path: Path, batch_size: int
) -> None:
    talks = conversations()
    sequential = new_tenant(quiet_sessions)
    deliver(matcher, quiet_sessions, sequential, [mail for talk in talks for mail in talk])
    expected = partition(quiet_sessions, sequential)
    assert len(expected) == 6 // 2 + 6 // 2 + 5  # merged conversations, a "Hello" for half of them, the pairs

    # Shuffled, then dealt so that the workers take messages of one conversation at the same time: the races
    # that locks must settle are between messages that belong together.
    shuffler = random.Random(7)
    shuffler.shuffle(talks)
    for talk in talks:
        shuffler.shuffle(talk)
    concurrent = new_tenant(quiet_sessions)
    inbound_ids = [str(receive(quiet_sessions, concurrent, mail.raw(concurrent))) for talk in talks for mail in talk]
    workers = 4
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers)
    processes = [
        context.Process(
            target=_process_share,
            args=(infra.quiet_database_url, str(tmp_path / "blobs"), inbound_ids[n::workers], start, batch_size),
        )
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=180)  # a hang detector: a shared two-core machine can be very slow
        assert process.exitcode == 0
    with quiet_sessions() as session:
        statuses = set(
            session.scalars(select(InboundMessage.status).where(InboundMessage.account_id == concurrent.account_id))
        )
    assert statuses == {InboundStatus.processed}
    assert partition(quiet_sessions, concurrent) == expected


def test_outlook_thread_index_alone_joins_a_conversation(
    matcher: Matcher, quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant
) -> None:
    # Outlook keeps the first 22 bytes of Thread-Index for the whole conversation and appends 5 per reply.
    root = bytes(range(22))
    first = make_mail(sender=quiet_tenant.user_email, to=["ola@client.example"], subject="Budget", message_id="<o1@x>")
    first["Thread-Index"] = base64.b64encode(root).decode()
    reply = make_mail(
        sender=quiet_tenant.user_email, to=["ola@client.example"], subject="Different words", message_id="<o2@x>"
    )
    reply["Thread-Index"] = base64.b64encode(root + b"\x01\x02\x03\x04\x05").decode()
    for mail in (reply, first):
        assert matcher.process(receive(quiet_sessions, quiet_tenant, mail)) is Outcome.stored
    with quiet_sessions() as session:
        threads = set(
            session.scalars(select(Message.thread_id).where(Message.account_id == quiet_tenant.account_id)).all()
        )
    assert len(threads) == 1
