"""The gateway's SMTP replies, line by line, over a real socket."""

from __future__ import annotations

import smtplib

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.models import InboundMessage
from tests.conftest import STACK_MAX_MESSAGE_BYTES, Tenant
from tests.support.stack import Stack, make_mail, wire_bytes


def client(stack: Stack) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=30)
    smtp.ehlo("tests.example")
    return smtp


def inbound_count(sessions: sessionmaker[Session], tenant: Tenant) -> int:
    with sessions() as session:
        return (
            session.scalar(
                select(func.count()).select_from(InboundMessage).where(InboundMessage.account_id == tenant.account_id)
            )
            or 0
        )


def test_ehlo_advertises_the_size_limit(stack: Stack) -> None:
    with client(stack) as smtp:
        assert smtp.has_extn("size")
        assert smtp.esmtp_features["size"] == str(STACK_MAX_MESSAGE_BYTES)
        assert smtp.has_extn("8bitmime")


def test_unknown_smart_bcc_address_is_rejected_at_rcpt(stack: Stack) -> None:
    with client(stack) as smtp:
        smtp.mail("someone@example.net")
        assert smtp.rcpt("nobody123@bcc.mailroom.localhost") == (550, b"5.1.1 No such Smart-BCC address here")


def test_other_domains_are_not_relayed(stack: Stack, tenant: Tenant) -> None:
    local_part = tenant.bcc_address.split("@")[0]
    with client(stack) as smtp:
        smtp.mail("someone@example.net")
        code, reply = smtp.rcpt(f"{local_part}@elsewhere.example")
        assert (code, reply) == (550, b"5.7.1 This server only accepts mail for its Smart-BCC addresses")


def test_known_address_is_accepted_case_insensitively_and_with_a_sub_address(stack: Stack, tenant: Tenant) -> None:
    local_part, domain = tenant.bcc_address.split("@")
    with client(stack) as smtp:
        smtp.mail("someone@example.net")
        assert smtp.rcpt(f"{local_part.upper()}@{domain.upper()}") == (250, b"2.1.5 OK")
        assert smtp.rcpt(f"{local_part}+deal-42@{domain}") == (250, b"2.1.5 OK")


def test_a_path_that_breaks_the_address_parser_is_malformed_not_a_server_error(stack: Stack) -> None:
    with client(stack) as smtp:
        assert smtp.docmd("MAIL FROM:sender@") == (553, b"5.1.3 Error: malformed address")
        smtp.mail("someone@example.net")
        assert smtp.docmd("RCPT TO:someone@") == (553, b"5.1.3 Error: malformed address")


def test_data_without_any_accepted_recipient_is_refused(stack: Stack) -> None:
    with client(stack) as smtp:
        smtp.mail("someone@example.net")
        smtp.rcpt("nobody123@bcc.mailroom.localhost")
        smtp.putcmd("data")
        assert smtp.getreply() == (503, b"Error: need RCPT command")


def test_declared_size_over_the_limit_is_refused_at_mail(stack: Stack) -> None:
    with client(stack) as smtp:
        code, reply = smtp.mail("someone@example.net", options=[f"SIZE={STACK_MAX_MESSAGE_BYTES + 1}"])
        assert code == 552
        assert b"size" in reply.lower()


def test_message_over_the_limit_is_refused_and_not_stored(
    stack: Stack, tenant: Tenant, sessions: sessionmaker[Session]
) -> None:
    big = make_mail(
        sender=tenant.user_email,
        to=["x@client.example"],
        subject="Too big",
        attachments=[("big.bin", "application/octet-stream", b"\x01" * STACK_MAX_MESSAGE_BYTES)],
    )
    with client(stack) as smtp:
        smtp.mail(tenant.user_email)
        smtp.rcpt(tenant.bcc_address)
        code, reply = smtp.data(wire_bytes(big))
    assert (code, reply) == (552, b"Error: Too much mail data")
    assert inbound_count(sessions, tenant) == 0


def test_two_smart_bcc_recipients_get_one_stored_copy_each(
    stack: Stack, tenant: Tenant, sessions: sessionmaker[Session]
) -> None:
    from tests.conftest import new_tenant

    other = new_tenant(sessions)
    mail = make_mail(sender=tenant.user_email, to=["x@client.example"], subject="Both")
    with client(stack) as smtp:
        smtp.mail(tenant.user_email)
        smtp.rcpt(tenant.bcc_address)
        smtp.rcpt(other.bcc_address)
        code, reply = smtp.data(wire_bytes(mail))
    assert code == 250
    assert reply.startswith(b"2.0.0 queued as ")
    assert len(reply.split(b" ")[-1].split(b",")) == 2
    assert inbound_count(sessions, tenant) == 1
    assert inbound_count(sessions, other) == 1
