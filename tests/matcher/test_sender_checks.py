"""The matcher with sender authentication required: results are recorded once and reused, except where DNS did
not answer, which a reprocess checks again."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.authentication import SenderAuthConfig, SenderAuthentication, authenticate
from services.matcher.pipeline import Matcher, Outcome
from shared.blobstore import LocalBlobStore
from shared.db import transaction
from shared.models import InboundMessage, InboundStatus, Message
from tests.conftest import Tenant
from tests.matcher.conftest import receive
from tests.support.dns_zone import DnsServer, SigningKey, Zone, dns_server, new_signing_key
from tests.support.stack import make_mail, wire_bytes


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return new_signing_key("acme.example")


@pytest.fixture(scope="module")
def dns(key: SigningKey) -> Iterator[DnsServer]:
    zone = Zone()
    key.publish(zone)
    with dns_server(zone) as server:
        yield server


def strict_matcher(sessions: sessionmaker[Session], blobs: Path, resolver: str) -> Matcher:
    config = SenderAuthConfig(authserv_id="mx.test", resolver=resolver, timeout_seconds=0.3, budget_seconds=1.0)
    return Matcher(sessions=sessions, blobs=LocalBlobStore(blobs), sender_auth=config)


def reprocess(sessions: sessionmaker[Session], inbound_id: uuid.UUID) -> None:
    """What `POST /v1/held-messages/{id}/reprocess` does to the row."""
    with transaction(sessions) as session:
        session.execute(
            update(InboundMessage).where(InboundMessage.id == inbound_id).values(status=InboundStatus.received)
        )


def signed(key: SigningKey, tenant: Tenant, subject: str) -> bytes:
    mail = make_mail(
        sender=tenant.user_email, to=["jane@customer.example"], subject=subject, message_id=f"<{uuid.uuid4()}@t>"
    )
    return key.sign(wire_bytes(mail))


def test_mail_held_because_dns_did_not_answer_is_checked_again_on_reprocess(
    quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant, key: SigningKey, dns: DnsServer, tmp_path: Path
) -> None:
    inbound_id = receive(quiet_sessions, quiet_tenant, signed(key, quiet_tenant, "DNS was down"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        down = strict_matcher(quiet_sessions, tmp_path, f"127.0.0.1:{silent.getsockname()[1]}")
        assert down.process(inbound_id) is Outcome.held
    with quiet_sessions() as session:
        row = session.get_one(InboundMessage, inbound_id)
        assert row.auth_results is not None
        assert row.auth_results["dkim"][0]["result"] == "temperror"
        assert "DNS did not answer" in (row.hold_reason or "")

    reprocess(quiet_sessions, inbound_id)
    assert strict_matcher(quiet_sessions, tmp_path, dns.address).process(inbound_id) is Outcome.stored
    with quiet_sessions() as session:
        row = session.get_one(InboundMessage, inbound_id)
        message = session.get_one(Message, row.message_id)
        assert (row.auth_summary, message.auth_summary, message.kind) == ("pass", "pass", "sent")


def test_a_recorded_failure_is_not_checked_again(
    quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant, key: SigningKey, dns: DnsServer, tmp_path: Path
) -> None:
    raw = signed(key, quiet_tenant, "Tampered").replace(b"Hello", b"Goodbye")
    inbound_id = receive(quiet_sessions, quiet_tenant, raw)
    matcher = strict_matcher(quiet_sessions, tmp_path, dns.address)
    assert matcher.process(inbound_id) is Outcome.held
    lookups = len(dns.zone.queries)

    reprocess(quiet_sessions, inbound_id)
    assert matcher.process(inbound_id) is Outcome.held
    assert len(dns.zone.queries) == lookups  # decided on the facts of arrival
    with quiet_sessions() as session:
        assert session.get_one(InboundMessage, inbound_id).auth_summary == "fail"


def test_a_batch_checks_its_senders_side_by_side_while_dns_is_slow(
    quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant, tmp_path: Path
) -> None:
    """Each check waits on DNS; one after another, a batch of sixteen would hold its rows for sixteen waits."""
    zone = Zone(delay_seconds=0.2)
    with dns_server(zone) as slow_dns:
        # Not required: the user's unsigned mail is placed (and its failed checks recorded), not held.
        config = SenderAuthConfig(
            authserv_id="mx.test", require=False, resolver=slow_dns.address, timeout_seconds=2.0, budget_seconds=5.0
        )
        matcher = Matcher(sessions=quiet_sessions, blobs=LocalBlobStore(tmp_path), sender_auth=config, batch_size=4)
        inbound_ids = [
            receive(
                quiet_sessions,
                quiet_tenant,
                make_mail(
                    sender=quiet_tenant.user_email,
                    to=[f"buyer@customer{n}.example"],
                    subject=f"Quote {n}",
                    message_id=f"<{uuid.uuid4()}@t>",
                ),
            )
            for n in range(4)
        ]
        # One queue message for the four, as the gateway sends a group it committed together.
        assert set(matcher.process_due(inbound_ids).values()) == {Outcome.stored}

    assert zone.most_in_flight >= 2
    with quiet_sessions() as session:
        rows = [session.get_one(InboundMessage, inbound_id) for inbound_id in inbound_ids]
        assert [row.status for row in rows] == [InboundStatus.processed] * 4
        assert all(row.auth_results is not None and row.auth_summary == "none" for row in rows)


def test_a_sender_check_that_raises_fails_its_own_message_not_its_batch(
    quiet_sessions: sessionmaker[Session], quiet_tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def authenticate_or_trip(raw: bytes, **arrival: Any) -> SenderAuthentication:
        if b"Subject: Trips the checker" in raw:
            raise ValueError("a check the sender checks did not foresee")
        return authenticate(raw, **arrival)

    monkeypatch.setattr("services.matcher.pipeline.authenticate", authenticate_or_trip)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no DNS needed: nothing here is required
    silent.bind(("127.0.0.1", 0))
    config = SenderAuthConfig(
        authserv_id="mx.test", require=False, resolver=f"127.0.0.1:{silent.getsockname()[1]}", budget_seconds=0.2
    )
    matcher = Matcher(sessions=quiet_sessions, blobs=LocalBlobStore(tmp_path), sender_auth=config, batch_size=3)
    inbound_ids = [
        receive(
            quiet_sessions,
            quiet_tenant,
            make_mail(
                sender=quiet_tenant.user_email,
                to=["jane@customer.example"],
                subject=subject,
                message_id=f"<{uuid.uuid4()}@t>",
            ),
        )
        for subject in ("Fine", "Trips the checker", "Also fine")
    ]
    try:
        # The group's queue message is retried (with backoff) for the one that failed; the others are done.
        with pytest.raises(ValueError, match="did not foresee"):
            matcher.process_due(inbound_ids)
    finally:
        silent.close()

    with quiet_sessions() as session:
        fine, tripped, also_fine = (session.get_one(InboundMessage, inbound_id) for inbound_id in inbound_ids)
        # The batch-mates were placed in the batch's first claim; only the tripped one was tried again, alone.
        assert (fine.status, fine.attempts, also_fine.status, also_fine.attempts) == (
            InboundStatus.processed,
            1,
            InboundStatus.processed,
            1,
        )
        assert (tripped.status, tripped.attempts) == (InboundStatus.received, 2)
        assert "a check the sender checks did not foresee" in (tripped.last_error or "")
