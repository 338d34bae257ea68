"""The matcher on real Postgres: idempotent, duplicate-safe, and it never drops what it cannot process."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.actors import handle_inbound_received
from services.matcher.pipeline import Matcher, Outcome
from shared.blobstore import LocalBlobStore
from shared.models import Attachment, InboundMessage, Message, Person, Thread
from tests.conftest import Tenant
from tests.matcher.conftest import receive
from tests.support.stack import make_mail


def counts(sessions: sessionmaker[Session], tenant: Tenant) -> dict[str, int]:
    with sessions() as session:
        return {
            model.__tablename__: session.scalar(
                select(func.count()).select_from(model).where(model.account_id == tenant.account_id)
            )
            or 0
            for model in (Message, Thread, Person, Attachment)
        }


def test_processing_the_same_inbound_twice_changes_nothing(
    matcher: Matcher, quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant
) -> None:
    mail = make_mail(
        sender=quiet_tenant.user_email,
        to=["a@client.example", "B <b@client.example>"],
        subject="Twice",
        message_id="<twice@acme>",
        attachments=[("a.txt", "text/plain", b"A")],
    )
    inbound_id = receive(quiet_sessions, quiet_tenant, mail)
    assert matcher.process(inbound_id) is Outcome.stored
    before = counts(quiet_sessions, quiet_tenant)
    assert before == {"messages": 1, "threads": 1, "persons": 2, "attachments": 1}
    assert matcher.process(inbound_id) is Outcome.already_done
    assert counts(quiet_sessions, quiet_tenant) == before


def test_a_second_delivery_of_the_same_message_id_is_a_duplicate(
    matcher: Matcher, quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant
) -> None:
    mail = make_mail(sender=quiet_tenant.user_email, to=["a@client.example"], subject="Dup", message_id="<dup@x>")
    first, second = (receive(quiet_sessions, quiet_tenant, mail) for _ in range(2))
    assert matcher.process(first) is Outcome.stored
    assert matcher.process(second) is Outcome.duplicate
    with quiet_sessions() as session:
        rows = [session.get_one(InboundMessage, i) for i in (first, second)]
    assert rows[0].message_id == rows[1].message_id
    assert all(row.status == "processed" for row in rows)
    assert counts(quiet_sessions, quiet_tenant)["messages"] == 1


def test_a_message_without_message_id_gets_a_stable_one(
    matcher: Matcher, quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant
) -> None:
    mail = make_mail(sender=quiet_tenant.user_email, to=["a@client.example"], subject="No id")
    first, second = (receive(quiet_sessions, quiet_tenant, mail) for _ in range(2))
    assert matcher.process(first) is Outcome.stored
    assert matcher.process(second) is Outcome.duplicate
    with quiet_sessions() as session:
        stored = session.scalars(select(Message).where(Message.account_id == quiet_tenant.account_id)).one()
    assert stored.message_id_header.startswith("sha256-")


def test_a_queue_message_places_its_group_together_and_a_failing_member_is_retried_alone(
    quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant, tmp_path: Path
) -> None:
    """The gateway sends the ids it committed together in one queue message. When one of them fails, the queue
    message is retried: the others are not placed twice, and the failing one runs alone until it gives up."""
    not_a_directory = tmp_path / "blobs"
    not_a_directory.write_text("a file where the blob store expects a directory")
    matcher = Matcher(sessions=quiet_sessions, blobs=LocalBlobStore(not_a_directory), batch_size=16, max_attempts=3)
    mails = [
        make_mail(
            sender=quiet_tenant.user_email,
            to=["a@client.example"],
            subject=subject,
            attachments=[("a.bin", "application/octet-stream", b"\x00")] if subject == "Cannot store" else [],
        )
        for subject in ("First", "Cannot store", "Third")
    ]
    first, failing, third = (receive(quiet_sessions, quiet_tenant, mail) for mail in mails)
    group = [str(first), str(failing), str(third)]

    def attempts() -> dict[uuid.UUID, tuple[str, int]]:
        with quiet_sessions() as session:
            rows = session.scalars(select(InboundMessage).where(InboundMessage.id.in_([first, failing, third])))
            return {row.id: (row.status, row.attempts) for row in rows}

    with pytest.raises(OSError, match="Not a directory"):
        handle_inbound_received(matcher, *group)
    # Placed together in one batch; the failing one was then tried once more on its own.
    assert attempts() == {first: ("processed", 1), failing: ("received", 2), third: ("processed", 1)}

    handle_inbound_received(matcher, *group)  # dramatiq's retry: its last attempt ends it, without raising
    assert attempts() == {first: ("processed", 1), failing: ("failed", 3), third: ("processed", 1)}
    assert counts(quiet_sessions, quiet_tenant)["messages"] == 2


def test_a_message_that_keeps_failing_ends_failed_with_its_reason(
    quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "blobs"
    not_a_directory.write_text("a file where the blob store expects a directory")
    matcher = Matcher(sessions=quiet_sessions, blobs=LocalBlobStore(not_a_directory), max_attempts=3)
    mail = make_mail(
        sender=quiet_tenant.user_email,
        to=["a@client.example"],
        subject="Cannot store",
        attachments=[("a.bin", "application/octet-stream", b"\x00")],
    )
    inbound_id = receive(quiet_sessions, quiet_tenant, mail)

    for _ in range(2):
        with pytest.raises(OSError, match="Not a directory"):
            handle_inbound_received(matcher, str(inbound_id))
    handle_inbound_received(matcher, str(inbound_id))  # the last attempt does not raise

    with quiet_sessions() as session:
        inbound = session.get_one(InboundMessage, inbound_id)
    assert inbound.status == "failed"
    assert inbound.attempts == 3
    assert inbound.last_error is not None
    assert "NotADirectoryError" in inbound.last_error
    assert inbound.raw  # the raw message is kept for a later reprocess
    assert counts(quiet_sessions, quiet_tenant)["messages"] == 0  # nothing half-written
