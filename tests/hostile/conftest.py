"""A stack with small limits, attacked from addresses of their own (127.0.0.0/8 is all loopback on Linux), so each
attack counts against its own client and ordinary mail comes from yet another one."""

from __future__ import annotations

import itertools
import smtplib
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.models import InboundMessage
from tests.conftest import Infra, Tenant, stack_env
from tests.support.servers import free_port
from tests.support.stack import Stack, make_mail, wait_for, wire_bytes

HARD_ERROR_LIMIT = 5
MAX_RECIPIENTS = 5
MAX_SESSIONS = 8
MAX_SESSIONS_PER_CLIENT = 3
CONNECTIONS_PER_MINUTE = 10
MESSAGES_PER_MINUTE = 5

_client_addresses = (f"127.0.{n // 250}.{n % 250 + 2}" for n in itertools.count(250))


def new_client_address() -> str:
    """A loopback address no other test of this run connects from."""
    return next(_client_addresses)


@pytest.fixture(scope="session")
def hostile(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("hostile")
    env = stack_env(
        infra,
        data_dir,
        smtp_hard_error_limit=str(HARD_ERROR_LIMIT),
        smtp_max_recipients=str(MAX_RECIPIENTS),
        smtp_max_sessions=str(MAX_SESSIONS),
        smtp_max_sessions_per_peer=str(MAX_SESSIONS_PER_CLIENT),
        smtp_connection_rate_per_minute=str(CONNECTIONS_PER_MINUTE),
        smtp_message_rate_per_minute=str(MESSAGES_PER_MINUTE),
        smtp_client_limit_exempt_networks="",
    )
    running = Stack(env=env, log_dir=data_dir)
    running.start("gateway", "worker", "api")
    yield running
    running.stop()


def extra_gateway(hostile: Stack, log_dir: Path, **overrides: str) -> Stack:
    """Another gateway on the hostile stack's database and queue (its worker and API serve this one's mail too)."""
    env = dict(hostile.env)
    env["MAILROOM_SMTP_PORT"] = str(free_port())
    env.update({f"MAILROOM_{key.upper()}": value for key, value in overrides.items()})
    gateway = Stack(env=env, log_dir=log_dir)
    gateway.start("gateway")
    return gateway


@pytest.fixture
def hostile_api(hostile: Stack, tenant: Tenant) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=hostile.api_url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=30
    ) as client:
        yield client


class RawSMTP:
    """A bare SMTP client over a real socket, from a chosen source address: it sends what a test says and reads
    whatever the server answers, including a `421` smtplib would turn into an exception."""

    def __init__(self, port: int, *, source: str, host: str = "127.0.0.1", timeout: float = 30) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
        self._file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> tuple[int, str]:
        """The next reply (its last line's code and text); (0, "") once the server closed the connection."""
        while True:
            line = self._file.readline()
            if not line:
                return 0, ""
            if line[3:4] != b"-":
                return int(line[:3]), line[4:].decode().strip()

    def command(self, line: str) -> tuple[int, str]:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self._file.close()
        self.sock.close()

    def __enter__(self) -> RawSMTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_from(port: int, source: str, recipients: list[str], raw: bytes, *, sender: str) -> str:
    """Send one message from `source` with smtplib; the `250` text, or raise."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as smtp:
        smtp.ehlo("ordinary.example")
        smtp.mail(sender)
        for recipient in recipients:
            code, reply = smtp.rcpt(recipient)
            assert code == 250, (recipient, code, reply)
        code, reply = smtp.data(raw)
        assert code == 250, (code, reply)
        return reply.decode()


def ordinary_mail_arrives(hostile: Stack, tenant: Tenant, api: httpx.Client, *, port: int | None = None) -> None:
    """Mail from a client that did nothing wrong still gets its `250`, and shows up in the mailbox."""
    subject = f"Ordinary {uuid.uuid4().hex[:8]}"
    mail = make_mail(sender=tenant.user_email, to=["kim@client.example"], subject=subject)
    port = port or hostile.smtp_port
    reply = send_from(port, new_client_address(), [tenant.bcc_address], wire_bytes(mail), sender=tenant.user_email)
    assert reply.startswith("2.0.0 queued as ")

    def listed() -> bool:
        messages = api.get("/v1/messages").json()["data"]
        return any(message["subject"] == subject for message in messages)

    wait_for(listed, timeout=30, what="the ordinary message in the API")


def inbound_rows(sessions: sessionmaker[Session], tenant: Tenant) -> list[InboundMessage]:
    with sessions() as session:
        return list(session.scalars(select(InboundMessage).where(InboundMessage.account_id == tenant.account_id)))
