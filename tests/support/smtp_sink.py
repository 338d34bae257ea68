"""An SMTP server that keeps what it receives: the relay that Mailroom's outbound mail goes to in tests."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.support.servers import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None


@dataclass
class SinkHandler:
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802 -- aiosmtpd
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        with self.lock:
            self.received.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), message, login)  # type: ignore[arg-type]
            )
        return "250 2.0.0 kept"


@dataclass
class Sink:
    port: int
    handler: SinkHandler

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)


def _authenticator(credentials: dict[str, str]) -> Any:
    def check(server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if credentials.get(user) == password:
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    return check


@contextmanager
def smtp_sink(credentials: dict[str, str] | None = None) -> Iterator[Sink]:
    """A sink on 127.0.0.1:<free port>; with `credentials`, it requires AUTH (plain text over loopback)."""
    handler = SinkHandler()
    port = free_port()
    options: dict[str, Any] = {}
    if credentials is not None:
        options = {"authenticator": _authenticator(credentials), "auth_required": True, "auth_require_tls": False}
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield Sink(port, handler)
    finally:
        controller.stop()
