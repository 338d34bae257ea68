"""A message that kills its worker every time ends `failed` with the reason, and costs its batch nothing.

The worker is a real `mailroom worker` process, killed with SIGKILL while it is inside the message. No test hook in
the product makes it slow: the test itself holds the advisory lock of the poison message's Message-ID (as a
concurrent worker storing a message with the same id would), so the worker's batch waits on it in Postgres; the
test sees that wait in `pg_locks` and kills the process mid-message.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from shared.db import make_engine, make_session_factory
from shared.locks import lock_names
from shared.models import InboundMessage, InboundStatus, Message
from tests.conftest import Infra, Tenant, new_tenant, stack_env
from tests.matcher.conftest import receive
from tests.support.stack import Stack, make_mail, wait_for

MAX_ATTEMPTS = 2


@contextmanager
def holding_thread_key(sessions: sessionmaker[Session], tenant: Tenant, message_id: str) -> Iterator[None]:
    with sessions() as session, session.begin():
        lock_names(session, tenant.account_id, [f"thread-key:{message_id}"])
        yield
        session.rollback()


def attempts_of(sessions: sessionmaker[Session], inbound_id: uuid.UUID) -> int:
    with sessions() as session:
        return session.get_one(InboundMessage, inbound_id).attempts


def a_worker_waits_on_an_advisory_lock(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        waiting = session.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )
    return bool(waiting)


def kill_worker_inside(stack: Stack, sessions: sessionmaker[Session], poison: uuid.UUID, attempt: int) -> None:
    """Start a worker, wait until it has claimed the poison message (attempt counted) and waits inside it, and
    SIGKILL it there."""
    stack.start("worker")
    wait_for(
        lambda: attempts_of(sessions, poison) == attempt and a_worker_waits_on_an_advisory_lock(sessions),
        timeout=60,
        what=f"the worker inside the poison message (attempt {attempt})",
    )
    worker = stack.processes.pop("worker").process
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)


def test_a_message_that_kills_its_worker_ends_failed_and_its_batch_is_placed(
    infra: Infra, scratch_database: str, tmp_path: Path
) -> None:
    engine = make_engine(scratch_database)
    sessions = make_session_factory(engine)
    tenant = new_tenant(sessions)
    env = stack_env(
        infra,
        tmp_path,
        database_url=scratch_database,
        queue_namespace=f"{infra.namespace}-poison",
        worker_threads="1",  # one consumer: the first claim takes the whole backlog as one batch
        process_max_attempts=str(MAX_ATTEMPTS),
        # No time limit may interrupt the waiting worker before the test kills it.
        process_time_limit_seconds="60",
        matcher_claim_seconds="2",
        matcher_batch_size="16",
        sweep_grace_seconds="0",
    )
    stack = Stack(env=env, log_dir=tmp_path)
    innocent = [
        receive(
            sessions,
            tenant,
            make_mail(
                sender=tenant.user_email, to=[f"c{n}@client.example"], subject=f"Fine {n}", message_id=f"<ok{n}@a>"
            ),
        )
        for n in range(3)
    ]
    poison = receive(
        sessions,
        tenant,
        make_mail(sender=tenant.user_email, to=["p@client.example"], subject="Poison", message_id="<poison@a>"),
    )
    try:
        with holding_thread_key(sessions, tenant, "poison@a"):
            # 1st death: the batch (all four messages) dies; each of them has one attempt counted.
            kill_worker_inside(stack, sessions, poison, attempt=1)
        assert {attempts_of(sessions, i) for i in innocent} == {1}

        with holding_thread_key(sessions, tenant, "poison@a"):
            # 2nd death: now every message runs alone, so the three innocent ones get through meanwhile.
            kill_worker_inside(stack, sessions, poison, attempt=MAX_ATTEMPTS)

        stack.start("worker")  # the sweep finds it out of attempts, still unfinished, no longer claimed

        def poison_failed() -> InboundMessage | None:
            with sessions() as session:
                row = session.get_one(InboundMessage, poison)
                return row if row.status == InboundStatus.failed else None

        failed = wait_for(poison_failed, timeout=60, what="the poison message marked failed")
        assert failed.attempts == MAX_ATTEMPTS  # never claimed a third time
        assert failed.last_error is not None
        assert f"the worker died {MAX_ATTEMPTS} times processing it" in failed.last_error
        assert failed.raw  # kept for a reprocess once the cause is fixed

        def innocent_processed() -> bool:
            with sessions() as session:
                statuses = set(
                    session.scalars(select(InboundMessage.status).where(InboundMessage.id.in_(innocent))).all()
                )
            return statuses == {InboundStatus.processed}

        wait_for(innocent_processed, timeout=60, what="the poison message's batch-mates processed")
        with sessions() as session:
            stored = set(session.scalars(select(Message.message_id_header)).all())
        assert stored == {"ok0@a", "ok1@a", "ok2@a"}
    finally:
        stack.stop()
        engine.dispose()
