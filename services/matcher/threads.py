"""Which thread a message belongs to: RFC 5322 Message-ID / In-Reply-To / References, the JWZ way.

Every id a thread has seen — its messages' own and the ones they reference — is a `ThreadKey`. A message joins
the thread that holds any of its ids; ids that belong to different threads merge those threads. Because the
result only depends on which ids are connected, the same messages give the same threads in any arrival order.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.locks import lock_names
from shared.models import Message, Thread, ThreadKey


def assign_thread(
    session: Session,
    account_id: uuid.UUID,
    *,
    message_id: str,
    references: tuple[str, ...],
    subject: str | None,
    sent_at: datetime | None,
    participants: frozenset[str] = frozenset(),
) -> uuid.UUID:
    """The thread of a message; `participants` are its external addresses, normalized."""
    keys = sorted({message_id, *references})
    lock_names(session, account_id, (f"thread-key:{key}" for key in keys))
    known = session.execute(
        select(ThreadKey.message_id_header, ThreadKey.thread_id).where(
            ThreadKey.account_id == account_id, ThreadKey.message_id_header.in_(keys)
        )
    ).all()
    thread_ids = {row.thread_id for row in known}
    if not thread_ids:
        thread = Thread(account_id=account_id, subject=subject, last_message_at=sent_at)
        session.add(thread)
        session.flush()
        thread_id = thread.id
    else:
        thread_id = _merge(session, account_id, thread_ids)
    missing = [key for key in keys if key not in {row.message_id_header for row in known}]
    if missing:
        session.execute(
            insert(ThreadKey)
            .values([{"account_id": account_id, "message_id_header": key, "thread_id": thread_id} for key in missing])
            .on_conflict_do_nothing()
        )
    return thread_id


def _merge(session: Session, account_id: uuid.UUID, thread_ids: set[uuid.UUID]) -> uuid.UUID:
    """Lock the threads (so nobody adds to one being merged away) and fold them into one survivor."""
    threads = session.scalars(
        select(Thread)
        .where(Thread.account_id == account_id, Thread.id.in_(thread_ids))
        .order_by(Thread.id)
        .with_for_update()
    ).all()
    # The survivor keeps a deal link if one exists (a user's choice must not be lost), else the oldest wins.
    survivor = min(threads, key=lambda t: (t.deal_id is None, t.created_at, t.id))
    losers = [t.id for t in threads if t.id != survivor.id]
    if not losers:
        return survivor.id
    session.execute(
        update(ThreadKey)
        .where(ThreadKey.account_id == account_id, ThreadKey.thread_id.in_(losers))
        .values(thread_id=survivor.id)
    )
    session.execute(
        update(Message)
        .where(Message.account_id == account_id, Message.thread_id.in_(losers))
        .values(thread_id=survivor.id)
    )
    latest = [t.last_message_at for t in threads if t.last_message_at is not None]
    survivor.last_message_at = max(latest) if latest else None
    session.execute(delete(Thread).where(Thread.account_id == account_id, Thread.id.in_(losers)))
    return survivor.id
