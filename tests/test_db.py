"""Inserts deferred to the transaction's next statement (`shared.db.defer_insert`), on a real Postgres."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import InsertInto, defer_insert, transaction
from shared.models import Thread, ThreadKey
from tests.conftest import new_tenant

THREADS = InsertInto("threads", ("id", "account_id", "subject", "first_message_at"))
KEYS = InsertInto("thread_keys", ("account_id", "message_id_header", "thread_id"), skip_conflicts=True)


def _defer_thread(session: Session, account_id: uuid.UUID, *keys: str) -> uuid.UUID:
    thread_id = uuid.uuid4()
    # The child rows first, on purpose: `order` puts the parent first in the statement.
    defer_insert(
        session,
        KEYS,
        [{"account_id": account_id, "message_id_header": k, "thread_id": thread_id} for k in keys],
        order=1,
    )
    when = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    defer_insert(
        session,
        THREADS,
        [{"id": thread_id, "account_id": account_id, "subject": 'Über "quotes"', "first_message_at": when}],
        order=0,
    )
    return thread_id


def test_deferred_rows_reach_the_next_statement_and_the_commit(quiet_sessions: sessionmaker[Session]) -> None:
    tenant = new_tenant(quiet_sessions)
    with transaction(quiet_sessions) as session:
        first = _defer_thread(session, tenant.account_id, "a@x", "b@x")
        # The next statement, whatever it is, sees them: they went in just before it.
        thread = session.scalars(select(Thread).where(Thread.id == first)).one()
        assert thread.subject == 'Über "quotes"'
        assert thread.first_message_at == datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
        assert thread.created_at is not None  # a column not given takes its default
        # A key that exists already is skipped, as `skip_conflicts` says; the thread's other key goes in.
        second = _defer_thread(session, tenant.account_id, "b@x", "c@x")
    # Nothing ran after the second thread but the commit: it took them.
    with quiet_sessions() as session:
        keys = dict(
            session.execute(
                select(ThreadKey.message_id_header, ThreadKey.thread_id).where(
                    ThreadKey.account_id == tenant.account_id
                )
            ).all()
        )
    assert keys == {"a@x": first, "b@x": first, "c@x": second}


def test_deferred_rows_of_a_transaction_that_does_not_commit_are_gone(quiet_sessions: sessionmaker[Session]) -> None:
    tenant = new_tenant(quiet_sessions)
    with quiet_sessions() as session:
        session.begin()
        dropped = _defer_thread(session, tenant.account_id, "gone@x")
        session.rollback()
        with session.begin():
            kept = _defer_thread(session, tenant.account_id, "kept@x")
        # Closed without a commit, like a rollback: nothing of it reaches the session's next transaction.
        session.begin()
        closed = _defer_thread(session, tenant.account_id, "closed@x")
        session.close()
        with session.begin():
            also_kept = _defer_thread(session, tenant.account_id, "also-kept@x")
    with quiet_sessions() as session:
        threads = set(session.scalars(select(Thread.id).where(Thread.account_id == tenant.account_id)))
    assert threads == {kept, also_kept}
    assert dropped not in threads
    assert closed not in threads
