"""Forged mail, end to end: the real gateway, worker and API, with sender authentication required and a DNS
server of the test's own answering for the senders' domains (DKIM keys made here, SPF and DMARC records).

Mail claiming to be from a user must authenticate; what does not is held with the reason (and can be
reprocessed), it cannot merge threads, and a forged bounce cannot mark a person's address as bouncing.
"""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import upgrade
from shared.models import InboundMessage, PersonEmail
from tests.conftest import Infra, Tenant, new_tenant, stack_env
from tests.support.dns_zone import DnsServer, SigningKey, Zone, dns_server, new_signing_key
from tests.support.servers import checkout_database_name, database_url, recreate_database
from tests.support.stack import Stack, make_mail, wait_for, wire_bytes

RELAY_IP = "127.0.0.2"  # the trusted relay: the test connects from this loopback address to play it


@pytest.fixture(scope="module")
def acme_key() -> SigningKey:
    return new_signing_key("acme.example", selector="s2026")


@pytest.fixture(scope="module")
def dns(acme_key: SigningKey) -> Iterator[DnsServer]:
    zone = Zone()
    acme_key.publish(zone)
    # acme.example sends from elsewhere (its provider signs); 127.0.0.1 is not in its SPF record.
    zone.add("acme.example", "TXT", "v=spf1 ip4:192.0.2.10 -all")
    zone.add("_dmarc.acme.example", "TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@acme.example")
    # spf-only.example sends from this machine and signs nothing.
    zone.add("spf-only.example", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    with dns_server(zone) as server:
        yield server


@pytest.fixture(scope="module")
def hostile_database(infra: Infra, worker_id: str) -> str:
    """A database of this module's own: the shared stack (which does not check senders) must not touch its mail."""
    name = checkout_database_name(worker_id, "hostile")
    recreate_database(infra.admin_url, name)
    url = database_url(infra.admin_url, name)
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def hostile_sessions(hostile_database: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(hostile_database, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def strict_stack(
    infra: Infra, hostile_database: str, dns: DnsServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("strict-stack")
    env = stack_env(
        infra,
        data_dir,
        database_url=hostile_database,
        queue_namespace=f"mailroom-hostile-{uuid.uuid4().hex[:8]}",
        verify_senders="true",
        require_sender_auth="true",
        dns_resolver=dns.address,
        dns_timeout_seconds="2",
        trusted_relays=f'["{RELAY_IP}/32"]',
        trusted_authserv_ids='["relay.acme-mx.example"]',
        smtp_hostname="mx.mailroom.test",
    )
    running = Stack(env=env, log_dir=data_dir)
    running.start("gateway", "worker", "api")
    yield running
    running.stop()


@pytest.fixture
def tenant(hostile_sessions: sessionmaker[Session]) -> Tenant:
    return new_tenant(hostile_sessions)


@pytest.fixture
def api(strict_stack: Stack, tenant: Tenant) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=strict_stack.api_url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=30
    ) as client:
        yield client


def deliver(stack: Stack, tenant: Tenant, raw: bytes, *, mail_from: str, source_ip: str = "127.0.0.1") -> str:
    """Send over SMTP from `source_ip`; returns the inbound id of the `250 queued as` reply."""
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30, source_address=(source_ip, 0)) as client:
        client.ehlo("mail.sender.test")
        client.mail(mail_from)
        code, _ = client.rcpt(tenant.bcc_address)
        assert code == 250
        code, reply = client.data(raw)
        assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def signed_mail(key: SigningKey, tenant: Tenant, subject: str, **headers: str) -> bytes:
    mail = make_mail(
        sender=f"Sam Seller <{tenant.user_email}>",
        to=["Jane <jane@customer.example>"],
        subject=subject,
        body="Hi Jane, here is the offer.",
        message_id=f"<{uuid.uuid4().hex}@acme.example>",
        references=headers.get("references", "").split() or None,
    )
    return key.sign(wire_bytes(mail))


def processed(api: httpx.Client, hostile_sessions: sessionmaker[Session], inbound_id: str) -> InboundMessage:
    def done() -> InboundMessage | None:
        with transaction(hostile_sessions) as session:
            row = session.get(InboundMessage, uuid.UUID(inbound_id))
            if row is not None and row.status != "received":
                session.expunge(row)
                return row
            return None

    return wait_for(done, what=f"inbound {inbound_id} to be processed")


def message_of(api: httpx.Client, subject: str) -> dict[str, object]:
    [message] = [m for m in api.get("/v1/messages").json()["data"] if m["subject"] == subject]
    return message  # type: ignore[no-any-return]


def test_mail_signed_by_the_users_domain_is_stored_as_sent(
    strict_stack: Stack,
    tenant: Tenant,
    api: httpx.Client,
    acme_key: SigningKey,
    hostile_sessions: sessionmaker[Session],
) -> None:
    inbound_id = deliver(
        strict_stack, tenant, signed_mail(acme_key, tenant, "Signed offer"), mail_from=tenant.user_email
    )
    assert processed(api, hostile_sessions, inbound_id).status == "processed"

    message = message_of(api, "Signed offer")
    assert (message["kind"], message["direction"]) == ("sent", "outbound")
    authentication = message["authentication"]
    assert isinstance(authentication, dict)
    assert authentication["summary"] == "pass"
    assert authentication["source"] == "verified"
    header = str(authentication["header"])
    assert header.startswith("Authentication-Results: mx.mailroom.test;")
    assert "dkim=pass header.d=acme.example header.s=s2026" in header
    assert "spf=fail" in header  # 127.0.0.1 is not in acme.example's SPF record; the signature carries it
    assert "dmarc=pass header.from=acme.example" in header


def test_altered_mail_claiming_the_user_is_held_with_the_reason_and_can_be_reprocessed(
    strict_stack: Stack,
    tenant: Tenant,
    api: httpx.Client,
    acme_key: SigningKey,
    hostile_sessions: sessionmaker[Session],
) -> None:
    raw = signed_mail(acme_key, tenant, "Altered offer").replace(b"here is the offer", b"pay to this IBAN now")
    inbound_id = deliver(strict_stack, tenant, raw, mail_from=tenant.user_email)
    assert processed(api, hostile_sessions, inbound_id).status == "held"

    held = api.get(f"/v1/held-messages/{inbound_id}").json()
    reason = held["hold_reason"]
    assert f"From claims {tenant.user_email}" in reason
    assert "possibly forged" in reason
    assert "DKIM fail (acme.example)" in reason
    assert "SPF fail (acme.example)" in reason
    assert held["authentication"]["summary"] == "fail"
    assert "dkim=fail" in held["authentication"]["header"]
    assert api.get("/v1/messages").json()["data"] == []

    # The account vouches for the domain (say, a legacy server that mangles signatures): reprocessing places it.
    patched = api.patch("/v1/account", json={"unauthenticated_sender_domains": ["ACME.example"]})
    assert patched.json()["settings"]["unauthenticated_sender_domains"] == ["acme.example"]
    assert api.post(f"/v1/held-messages/{inbound_id}/reprocess").status_code == 202
    wait_for(lambda: [m for m in api.get("/v1/messages").json()["data"] if m["subject"] == "Altered offer"])
    message = message_of(api, "Altered offer")
    assert message["kind"] == "sent"
    assert message["authentication"]["summary"] == "fail"  # type: ignore[index]  # recorded as it arrived


def test_spf_pass_from_an_aligned_envelope_sender_counts_for_a_verified_alias(
    strict_stack: Stack, tenant: Tenant, api: httpx.Client, hostile_sessions: sessionmaker[Session]
) -> None:
    alias = "sam@spf-only.example"
    assert api.post(f"/v1/users/{tenant.user_id}/aliases", json={"address": alias, "verified": True}).is_success
    mail = make_mail(sender=f"Sam <{alias}>", to=["lee@client.example"], subject="Unsigned but SPF")
    inbound_id = deliver(strict_stack, tenant, wire_bytes(mail), mail_from=alias)
    assert processed(api, hostile_sessions, inbound_id).status == "processed"
    message = message_of(api, "Unsigned but SPF")
    assert message["kind"] == "sent"
    header = str(message["authentication"]["header"])  # type: ignore[index]
    assert "spf=pass" in header
    assert "smtp.mailfrom=sam@spf-only.example" in header

    # The same mail with another envelope sender has nothing aligned with From: held.
    mail = make_mail(sender=f"Sam <{alias}>", to=["lee@client.example"], subject="Unsigned, other envelope")
    inbound_id = deliver(strict_stack, tenant, wire_bytes(mail), mail_from="bounces@elsewhere.example")
    assert processed(api, hostile_sessions, inbound_id).status == "held"
    assert "SPF none (elsewhere.example)" in api.get(f"/v1/held-messages/{inbound_id}").json()["hold_reason"]


def test_forged_mail_referencing_two_threads_is_held_and_merges_nothing(
    strict_stack: Stack,
    tenant: Tenant,
    api: httpx.Client,
    acme_key: SigningKey,
    hostile_sessions: sessionmaker[Session],
) -> None:
    first = signed_mail(acme_key, tenant, "Thread one")
    second = signed_mail(acme_key, tenant, "Thread two")
    for raw in (first, second):
        assert processed(api, hostile_sessions, deliver(strict_stack, tenant, raw, mail_from=tenant.user_email))
    ids = [m["message_id"] for m in api.get("/v1/messages").json()["data"]]
    threads_before = {t["id"] for t in api.get("/v1/threads").json()["data"]}
    assert len(threads_before) == 2

    forged = make_mail(
        sender=f"Sam Seller <{tenant.user_email}>",
        to=["jane@customer.example"],
        subject="Re: both",
        references=[f"<{i}>" for i in ids],
    )
    inbound_id = deliver(strict_stack, tenant, wire_bytes(forged), mail_from=tenant.user_email)
    assert processed(api, hostile_sessions, inbound_id).status == "held"
    assert "possibly forged" in api.get(f"/v1/held-messages/{inbound_id}").json()["hold_reason"]
    assert {t["id"] for t in api.get("/v1/threads").json()["data"]} == threads_before
    assert len(api.get("/v1/messages").json()["data"]) == 2


def test_a_trusted_relays_authentication_results_are_believed_and_anyone_elses_ignored(
    strict_stack: Stack, tenant: Tenant, api: httpx.Client, hostile_sessions: sessionmaker[Session]
) -> None:
    def relayed(subject: str) -> bytes:
        mail = make_mail(sender=f"Sam <{tenant.user_email}>", to=["lee@client.example"], subject=subject)
        results = (
            "Authentication-Results: relay.acme-mx.example; dkim=pass header.d=acme.example header.s=sel;"
            " spf=pass smtp.mailfrom=acme.example; dmarc=pass header.from=acme.example\r\n"
        )
        return results.encode() + wire_bytes(mail)

    via_relay = deliver(strict_stack, tenant, relayed("Via the relay"), mail_from=tenant.user_email, source_ip=RELAY_IP)
    assert processed(api, hostile_sessions, via_relay).status == "processed"
    authentication = message_of(api, "Via the relay")["authentication"]
    assert authentication["summary"] == "pass"  # type: ignore[index]
    assert authentication["source"] == f"trusted relay {RELAY_IP} (relay.acme-mx.example)"  # type: ignore[index]

    # The same header written by the sender itself, arriving straight from a client that is no relay: ignored.
    direct = deliver(strict_stack, tenant, relayed("Claims a relay"), mail_from=tenant.user_email)
    assert processed(api, hostile_sessions, direct).status == "held"
    held = api.get(f"/v1/held-messages/{direct}").json()
    assert held["authentication"]["source"] == "verified"
    assert "no DKIM signature" in held["hold_reason"]


def _delivery_report(reporter: str, failed: str, original_id: str | None) -> bytes:
    about = f"In-Reply-To: <{original_id}>\r\n" if original_id else ""
    return (
        f"From: Mail Delivery System <{reporter}>\r\n"
        "To: sam@acme.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@bounce.test>\r\n"
        f"{about}"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.bounce.test\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "\r\n--b1--\r\n"
    ).encode()


def test_a_forged_bounce_cannot_mark_an_address_bouncing_but_one_about_the_users_mail_can(
    strict_stack: Stack,
    tenant: Tenant,
    api: httpx.Client,
    acme_key: SigningKey,
    hostile_sessions: sessionmaker[Session],
) -> None:
    sent = signed_mail(acme_key, tenant, "Offer to Jane")
    assert processed(api, hostile_sessions, deliver(strict_stack, tenant, sent, mail_from=tenant.user_email))
    sent_id = str(message_of(api, "Offer to Jane")["message_id"])

    def bounced_at() -> object:
        with transaction(hostile_sessions) as session:
            return session.scalar(
                select(PersonEmail.bounced_at).where(
                    PersonEmail.account_id == tenant.account_id, PersonEmail.address == "jane@customer.example"
                )
            )

    forged = _delivery_report("mailer-daemon@bounce.test", "jane@customer.example", None)
    inbound_id = deliver(strict_stack, tenant, forged, mail_from="")
    row = processed(api, hostile_sessions, inbound_id)
    assert row.status == "processed"  # stored, as machine mail is
    assert bounced_at() is None

    genuine = _delivery_report("mailer-daemon@bounce.test", "jane@customer.example", sent_id)
    assert processed(api, hostile_sessions, deliver(strict_stack, tenant, genuine, mail_from="")).status == "processed"
    assert bounced_at() is not None
