"""Mail that Mailroom itself sends (alias confirmations, approved drafts), through one configured SMTP relay.

`MAILROOM_SMTP_RELAY_URL` names the relay: `smtp://host:port` (plain, as to a local MTA), `smtp+starttls://…`
(upgraded with STARTTLS, certificate checked) or `smtps://…` (TLS from the first byte); `user:password@` before
the host logs in. Every step has a timeout, and every failure surfaces as one `OutboundError` saying what went
wrong, never as a hang or a bare socket error.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from shared.settings import Settings

_DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class OutboundError(Exception):
    """The message was not handed to the relay; the text says why."""


class OutboundNotConfiguredError(OutboundError):
    """No relay is configured (MAILROOM_SMTP_RELAY_URL is unset)."""


@dataclass(frozen=True)
class Relay:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> Relay:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise OutboundError("MAILROOM_SMTP_RELAY_URL must start with smtp://, smtp+starttls:// or smtps://")
        if not parts.hostname:
            raise OutboundError("MAILROOM_SMTP_RELAY_URL has no host")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError as exc:
            raise OutboundError(f"MAILROOM_SMTP_RELAY_URL has a bad port: {exc}") from exc
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def is_configured(settings: Settings) -> bool:
    return bool(settings.smtp_relay_url)


def send(settings: Settings, message: EmailMessage) -> None:
    """Hand `message` to the relay (envelope from its From/Sender, recipients from To/Cc/Bcc); raise on failure."""
    if not settings.smtp_relay_url:
        raise OutboundNotConfiguredError("no SMTP relay is configured (MAILROOM_SMTP_RELAY_URL)")
    relay = Relay.parse(settings.smtp_relay_url)
    timeout = settings.smtp_relay_timeout_seconds
    where = f"{relay.host}:{relay.port}"
    try:
        client: smtplib.SMTP
        if relay.scheme == "smtps":
            client = smtplib.SMTP_SSL(relay.host, relay.port, timeout=timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(relay.host, relay.port, timeout=timeout)
        with client:
            client.ehlo()
            if relay.scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if relay.username is not None:
                client.login(relay.username, relay.password or "")
            refused = client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise OutboundError(f"the relay {where} refused every recipient: {_refusals(exc.recipients)}") from exc
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise OutboundError(f"the relay {where} answered {exc.smtp_code} {text}") from exc
    except (smtplib.SMTPException, OSError) as exc:  # refused connection, timeout, TLS failure, dropped session
        raise OutboundError(f"could not send through the relay {where}: {type(exc).__name__}: {exc}") from exc
    if refused:
        raise OutboundError(f"the relay {where} refused some recipients: {_refusals(refused)}")


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address} ({code} {reply.decode(errors='replace')})" for address, (code, reply) in recipients.items()
    )
