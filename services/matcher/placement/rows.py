"""The rows placement inserts and reads no more within its batch: sent together with the batch's next statement
(see `shared.db.defer_insert`), parents before children, so the foreign keys hold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from shared.db import InsertInto, defer_insert
from shared.models import Message

THREADS = InsertInto(
    "threads", ("id", "account_id", "subject", "normalized_subject", "first_message_at", "last_message_at")
)
THREAD_KEYS = InsertInto("thread_keys", ("account_id", "message_id_header", "thread_id"), skip_conflicts=True)
THREAD_PARTICIPANTS = InsertInto("thread_participants", ("account_id", "thread_id", "address"), skip_conflicts=True)
# Every column of a message but those the database fills in: its clock and its transaction.
MESSAGES = InsertInto(
    "messages",
    tuple(column.key for column in Message.__table__.columns if column.key not in {"created_at", "feed_xid"}),
)
PERSONS = InsertInto(
    "persons",
    (
        "id",
        "account_id",
        "name",
        "organization_id",
        "organization_rule",
        "created_from",
        "created_by_rule",
        "created_by_message_id",
    ),
)
PERSON_EMAILS = InsertInto("person_emails", ("id", "account_id", "person_id", "address"))
MESSAGE_PERSONS = InsertInto("message_persons", ("account_id", "message_id", "person_id", "role", "rule"))
ATTACHMENTS = InsertInto(
    "attachments",
    ("id", "account_id", "message_id", "position", "filename", "content_type", "content_id", "size", "sha256"),
)

_PARENTS_FIRST = (
    THREADS,
    THREAD_KEYS,
    THREAD_PARTICIPANTS,
    MESSAGES,
    PERSONS,
    PERSON_EMAILS,
    MESSAGE_PERSONS,
    ATTACHMENTS,
)


def insert_later(session: Session, into: InsertInto, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        defer_insert(session, into, rows, order=_PARENTS_FIRST.index(into))
