"""Floods against the running gateway, over real SMTP: each gets its Postfix-like answer, loses nothing it
accepted, and leaves the gateway serving everybody else."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker

from shared import directory
from shared.db import transaction
from tests.conftest import Tenant
from tests.hostile.conftest import (
    CONNECTIONS_PER_MINUTE,
    HARD_ERROR_LIMIT,
    MAX_RECIPIENTS,
    MAX_SESSIONS,
    MAX_SESSIONS_PER_CLIENT,
    MESSAGES_PER_MINUTE,
    RawSMTP,
    extra_gateway,
    inbound_rows,
    new_client_address,
    ordinary_mail_arrives,
)
from tests.support.stack import Stack, make_mail, wait_for, wire_bytes


def mail_bytes(tenant: Tenant, subject: str) -> bytes:
    return wire_bytes(make_mail(sender=tenant.user_email, to=["kim@client.example"], subject=subject))


def start_transaction(smtp: RawSMTP, sender: str) -> None:
    assert smtp.command("EHLO attacker.example")[0] == 250
    assert smtp.command(f"MAIL FROM:<{sender}>")[0] == 250


def send_data(smtp: RawSMTP, raw: bytes) -> tuple[int, str]:
    assert smtp.command("DATA")[0] == 354
    smtp.send(raw + b".\r\n")
    return smtp.reply()


def test_address_harvesting_is_cut_off_after_the_hard_error_limit(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client
) -> None:
    with RawSMTP(hostile.smtp_port, source=new_client_address()) as smtp:
        start_transaction(smtp, "harvester@spam.example")
        replies = [smtp.command(f"RCPT TO:<guess{n}@bcc.mailroom.localhost>") for n in range(HARD_ERROR_LIMIT)]
        assert replies == [(550, "5.1.1 No such Smart-BCC address here")] * HARD_ERROR_LIMIT
        assert smtp.reply() == (421, "4.7.0 Too many errors, closing connection")
        assert smtp.reply() == (0, "")  # closed
    ordinary_mail_arrives(hostile, tenant, hostile_api)


def colleagues(sessions: sessionmaker[Session], tenant: Tenant, count: int) -> list[str]:
    """Smart-BCC addresses of `count` more users of the tenant's account."""
    with transaction(sessions) as session:
        users = [
            directory.create_user(session, tenant.account_id, f"colleague{n}.{uuid.uuid4().hex[:6]}@acme.example", None)
            for n in range(count)
        ]
        return [directory.bcc_address(user, "bcc.mailroom.localhost") for user in users]


def test_recipients_past_the_limit_get_452_and_the_accepted_ones_are_stored(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client, sessions: sessionmaker[Session]
) -> None:
    *team, one_too_many = colleagues(sessions, tenant, MAX_RECIPIENTS + 1)
    with RawSMTP(hostile.smtp_port, source=new_client_address()) as smtp:
        start_transaction(smtp, tenant.user_email)
        for address in team:
            assert smtp.command(f"RCPT TO:<{address}>") == (250, "2.1.5 OK")
        assert smtp.command(f"RCPT TO:<{one_too_many}>") == (452, "4.5.3 Too many recipients")
        code, reply = send_data(smtp, mail_bytes(tenant, "Many recipients"))
    assert code == 250
    # One line whatever the number of recipients: three ids, then how many more.
    assert reply.startswith("2.0.0 queued as ")
    assert reply.endswith(f" and {MAX_RECIPIENTS - 3} more")
    rows = inbound_rows(sessions, tenant)
    assert sorted(row.envelope_to for row in rows) == sorted(team)
    assert {row.status for row in rows} <= {"received", "processed"}
    ordinary_mail_arrives(hostile, tenant, hostile_api)


def test_the_same_mailbox_under_any_of_its_addresses_is_accepted_once_and_stored_once(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client, sessions: sessionmaker[Session]
) -> None:
    """A copy per sub-address would let one 25 MB message be stored a thousand times (the recipient limit)."""
    local_part, domain = tenant.bcc_address.split("@")
    first = f"{local_part}+deal-1@{domain}"
    again = [tenant.bcc_address, f"{local_part.upper()}@{domain.upper()}", first]
    again += [f"{local_part}+tag{n}@{domain}" for n in range(MAX_RECIPIENTS * 3)]
    with RawSMTP(hostile.smtp_port, source=new_client_address()) as smtp:
        start_transaction(smtp, tenant.user_email)
        for address in [first, *again]:  # past the recipient limit, but one mailbox: no 452
            assert smtp.command(f"RCPT TO:<{address}>") == (250, "2.1.5 OK")
        code, reply = send_data(smtp, mail_bytes(tenant, "Said many times"))
    assert code == 250
    [row] = inbound_rows(sessions, tenant)
    assert reply == f"2.0.0 queued as {row.id}"
    assert row.envelope_to == first  # the first address says where it goes
    wait_for(lambda: hostile_api.get("/v1/messages").json()["data"], what="the message in the API")
    assert len(hostile_api.get("/v1/messages").json()["data"]) == 1
    ordinary_mail_arrives(hostile, tenant, hostile_api)


def test_one_client_cannot_hold_more_sessions_than_its_cap(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client
) -> None:
    attacker = new_client_address()
    held = [RawSMTP(hostile.smtp_port, source=attacker) for _ in range(MAX_SESSIONS_PER_CLIENT)]
    try:
        assert all(smtp.greeting[0] == 220 for smtp in held)
        with RawSMTP(hostile.smtp_port, source=attacker) as refused:
            assert refused.greeting == (421, "4.7.0 Too many connections from your address, please try again later")
            assert refused.reply() == (0, "")
        ordinary_mail_arrives(hostile, tenant, hostile_api)
    finally:
        for smtp in held:
            smtp.close()


def test_all_clients_together_cannot_hold_more_sessions_than_the_global_cap(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client
) -> None:
    held = [RawSMTP(hostile.smtp_port, source=new_client_address()) for _ in range(MAX_SESSIONS)]
    try:
        assert all(smtp.greeting[0] == 220 for smtp in held)
        with RawSMTP(hostile.smtp_port, source=new_client_address()) as refused:
            assert refused.greeting == (421, "4.3.2 Too many connections, please try again later")
    finally:
        for smtp in held:
            assert smtp.command("QUIT")[0] == 221
            smtp.close()
    # Every slot comes back when its session ends.
    ordinary_mail_arrives(hostile, tenant, hostile_api)


def test_a_client_connecting_too_often_gets_421(hostile: Stack, tenant: Tenant, hostile_api: httpx.Client) -> None:
    attacker = new_client_address()
    for _ in range(CONNECTIONS_PER_MINUTE):
        with RawSMTP(hostile.smtp_port, source=attacker) as smtp:
            assert smtp.greeting[0] == 220
            assert smtp.command("QUIT")[0] == 221
    with RawSMTP(hostile.smtp_port, source=attacker) as refused:
        assert refused.greeting == (
            421,
            "4.7.0 Too many new connections from your address, please try again later",
        )
    ordinary_mail_arrives(hostile, tenant, hostile_api)


def test_a_client_sending_too_many_messages_gets_451_and_keeps_what_was_accepted(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client, sessions: sessionmaker[Session]
) -> None:
    with RawSMTP(hostile.smtp_port, source=new_client_address()) as smtp:
        assert smtp.command("EHLO busy.example")[0] == 250
        for n in range(MESSAGES_PER_MINUTE):
            assert smtp.command(f"MAIL FROM:<{tenant.user_email}>")[0] == 250
            assert smtp.command(f"RCPT TO:<{tenant.bcc_address}>")[0] == 250
            assert send_data(smtp, mail_bytes(tenant, f"Burst {n}"))[0] == 250
        assert smtp.command(f"MAIL FROM:<{tenant.user_email}>") == (
            451,
            "4.7.1 Too much mail from your address, please try again later",
        )
    rows = inbound_rows(sessions, tenant)
    assert len(rows) == MESSAGES_PER_MINUTE
    assert "failed" not in {row.status for row in rows}
    ordinary_mail_arrives(hostile, tenant, hostile_api)


def test_a_flood_of_wrong_addresses_from_many_clients_does_not_starve_real_mail(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client
) -> None:
    def guess_addresses(source: str) -> list[int]:
        with RawSMTP(hostile.smtp_port, source=source) as smtp:
            if smtp.greeting[0] != 220:
                return [smtp.greeting[0]]
            smtp.command("EHLO guesser.example")
            smtp.command("MAIL FROM:<guesser@spam.example>")
            # The same few guesses over and over: after the first miss each is answered from the cache.
            return [smtp.command(f"RCPT TO:<guess{n % 2}@bcc.mailroom.localhost>")[0] for n in range(HARD_ERROR_LIMIT)]

    clients = [new_client_address() for _ in range(40)]
    with ThreadPoolExecutor(max_workers=MAX_SESSIONS - 2) as pool:
        attacks = pool.map(guess_addresses, clients)
        ordinary_mail_arrives(hostile, tenant, hostile_api)
        codes = {code for answers in attacks for code in answers}
    assert codes <= {550, 421}  # refused, or told the server is busy: never accepted, never a crash


def test_an_idle_session_is_closed_but_a_slow_message_that_keeps_coming_is_not(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    gateway = extra_gateway(hostile, tmp_path, smtp_timeout_seconds="2")
    try:
        with RawSMTP(gateway.smtp_port, source=new_client_address()) as idle:
            assert idle.command("EHLO idle.example")[0] == 250
            assert idle.reply() == (421, "4.4.2 Timeout, closing connection")  # blocks until the server gives up
            assert idle.reply() == (0, "")

        body = b"".join(b"line %d of a slow message\r\n" % n for n in range(12))
        raw = mail_bytes(tenant, "Slow but steady").replace(b"Hello\r\n", body)
        with RawSMTP(gateway.smtp_port, source=new_client_address()) as slow:
            start_transaction(slow, tenant.user_email)
            assert slow.command(f"RCPT TO:<{tenant.bcc_address}>")[0] == 250
            assert slow.command("DATA")[0] == 354
            # About six seconds in all, three times the idle timeout, but never a full second without data.
            for n in range(0, len(raw), len(raw) // 12 + 1):
                slow.send(raw[n : n + len(raw) // 12 + 1])
                time.sleep(0.5)
            slow.send(b".\r\n")
            assert slow.reply()[0] == 250
        [row] = inbound_rows(sessions, tenant)
        assert row.raw == raw
        ordinary_mail_arrives(hostile, tenant, hostile_api, port=gateway.smtp_port)
    finally:
        gateway.stop()


def test_an_ipv6_client_is_capped_like_any_other(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client, tmp_path: Path
) -> None:
    # Only ::1 exists here, so this shows the cap holds over IPv6; that a whole /64 shares it is in test_limits.
    gateway = extra_gateway(hostile, tmp_path, smtp_host="::1")
    port = gateway.smtp_port
    try:
        held = [RawSMTP(port, host="::1", source="::1") for _ in range(MAX_SESSIONS_PER_CLIENT)]
        try:
            assert all(smtp.greeting[0] == 220 for smtp in held)
            with RawSMTP(port, host="::1", source="::1") as refused:
                assert refused.greeting == (
                    421,
                    "4.7.0 Too many connections from your address, please try again later",
                )
        finally:
            for smtp in held:
                smtp.command("QUIT")
                smtp.close()
        subject = "Over IPv6"
        mail = wire_bytes(make_mail(sender=tenant.user_email, to=["kim@client.example"], subject=subject))
        with RawSMTP(port, host="::1", source="::1") as smtp:
            start_transaction(smtp, tenant.user_email)
            assert smtp.command(f"RCPT TO:<{tenant.bcc_address}>")[0] == 250
            assert send_data(smtp, mail)[0] == 250
        wait_for(
            lambda: [m for m in hostile_api.get("/v1/messages").json()["data"] if m["subject"] == subject],
            what="the IPv6 message in the API",
        )
    finally:
        gateway.stop()
