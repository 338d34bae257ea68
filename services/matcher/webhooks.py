"""Webhook delivery: the `webhook.deliver` actor, and the sweep that finds every due delivery.

The database row is the truth (shared/events.py writes it in the transaction that made the event). An attempt
claims the row with a lease, sends without holding a transaction open, then records the outcome: success, a retry
at an exponentially later time, or `failed` after the last attempt. A lost queue message or a dead worker only
delays a delivery until the next sweep; two copies of a queue message cannot both send, because only one claims.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import httpx
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared import metrics
from shared.broker import ActorName, Queue, webhook_deliver
from shared.db import transaction
from shared.events import SIGNATURE_HEADER, WebhookSettings, sign
from shared.models import WebhookDelivery, WebhookDeliveryStatus
from shared.public_addresses import refusal_reason
from shared.settings import Settings

log = structlog.get_logger(__name__)

USER_AGENT = "Mailroom-Webhooks/1"

_CLAIM = text(
    "UPDATE webhook_deliveries AS d SET attempts = d.attempts + 1,"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " FROM webhook_subscriptions AS s"
    " WHERE d.id = :id AND d.status = 'pending' AND d.next_attempt_at <= now() AND s.id = d.subscription_id"
    " RETURNING d.attempts, d.payload, d.event, s.url, s.secret, s.active"
)
_DUE = text(
    "SELECT id FROM webhook_deliveries WHERE status = 'pending'"
    " AND next_attempt_at <= now() - make_interval(secs => :grace) ORDER BY next_attempt_at LIMIT :limit"
)


# A receiver answers with a status; its body is read (up to this much, undecoded) only so the connection ends
# cleanly. A receiver that streams forever, or a gzip bomb, costs no more than this.
MAX_RESPONSE_BYTES = 64 * 1024


class TargetNotAllowed(Exception):  # noqa: N818 -- a verdict on a URL, reported as the attempt's error
    pass


@dataclass(frozen=True)
class PinnedTarget:
    """A webhook URL resolved once and checked: the request goes to `url` (the checked address in place of the
    name) while `Host`, TLS SNI and certificate verification still use the name. A DNS answer that changes
    between the check and the connection (DNS rebinding) therefore cannot redirect the request."""

    url: httpx.URL
    host_header: str
    server_name: str


def resolve_target(url: str, *, allow_private: bool) -> PinnedTarget:
    """Resolve the URL's host and refuse it if any of its addresses is not public (unless the operator allows
    private targets); the first address is the one to connect to."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise TargetNotAllowed("the URL cannot be parsed") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise TargetNotAllowed("only http(s) URLs with a host can receive webhooks")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetNotAllowed(f"cannot resolve {host}") from exc
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise TargetNotAllowed(f"{host} has no address")
    if not allow_private:
        # Every address, not only the first: a name that also resolves inward is refused as a whole.
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                raise TargetNotAllowed(f"{host} resolves to {address}, a {reason}; webhooks go only to public hosts")
    return PinnedTarget(
        url=parsed.copy_with(host=str(addresses[0])),
        host_header=parsed.netloc.decode("ascii"),
        server_name=host,
    )


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int
    permanent: bool = False  # retrying cannot help (the target is refused)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class WebhookSender:
    sessions: sessionmaker[Session]
    broker: RedisBroker
    settings: WebhookSettings
    client: httpx.Client

    def deliver(self, delivery_id: uuid.UUID) -> str:
        """One attempt, if the delivery is due; returns what happened (for logs and tests)."""
        with transaction(self.sessions) as session:
            claimed = session.execute(_CLAIM, {"id": delivery_id, "lease": self.settings.lease_seconds}).one_or_none()
        if claimed is None:
            return "not-due"  # already sent, failed for good, or another attempt holds it
        if not claimed.active:
            attempt = Attempt(None, "the subscription is disabled", 0, permanent=True)
        else:
            attempt = self._send(claimed.url, claimed.secret, claimed.event, delivery_id, claimed.payload)
        return self._record(delivery_id, claimed.attempts, attempt)

    def _send(self, url: str, secret: str, event: str, delivery_id: uuid.UUID, payload: dict[str, Any]) -> Attempt:
        started = time.monotonic()
        try:
            target = resolve_target(url, allow_private=self.settings.allow_private_targets)
        except TargetNotAllowed as exc:
            return Attempt(None, str(exc), _ms_since(started), permanent=True)
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Mailroom-Event": event,
            "Mailroom-Event-Id": str(payload.get("id", "")),
            "Mailroom-Delivery": str(delivery_id),
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        }
        try:
            with self.client.stream(
                "POST", target.url, content=body, headers=headers, extensions={"sni_hostname": target.server_name}
            ) as response:
                _read_capped(response, deadline=started + self.settings.timeout_seconds)
        except httpx.HTTPError as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}"[:500], _ms_since(started))
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        return Attempt(response.status_code, error, _ms_since(started))

    def _record(self, delivery_id: uuid.UUID, attempts: int, attempt: Attempt) -> str:
        now = datetime.now(UTC)
        retry_in: float | None = None
        with transaction(self.sessions) as session:
            delivery = session.get_one(WebhookDelivery, delivery_id, with_for_update=True)
            delivery.attempt_log = [
                *delivery.attempt_log,
                {
                    "at": now.isoformat(),
                    "status_code": attempt.status_code,
                    "error": attempt.error,
                    "duration_ms": attempt.duration_ms,
                },
            ]
            delivery.last_status_code = attempt.status_code
            delivery.last_error = attempt.error
            if attempt.ok:
                delivery.status = WebhookDeliveryStatus.succeeded
                delivery.delivered_at = now
            elif attempt.permanent or attempts >= self.settings.max_attempts:
                delivery.status = WebhookDeliveryStatus.failed
            else:
                retry_in = backoff_seconds(self.settings, attempts)
                delivery.next_attempt_at = now + timedelta(seconds=retry_in)
            status = delivery.status
        if retry_in is not None:
            try:
                self.broker.enqueue(webhook_deliver(delivery_id), delay=int(retry_in * 1000))
            except Exception as exc:
                # The row says when it is due; the sweep sends it then.
                log.warning("webhook.retry_not_enqueued", error=type(exc).__name__)
        log.info(
            "webhook.attempt",
            delivery_id=str(delivery_id),
            attempt=attempts,
            status_code=attempt.status_code,
            outcome=status if retry_in is None else "retry",
        )
        return status if retry_in is None else "retry"

    def sweep(self, *, grace_seconds: float, limit: int = 10_000) -> int:
        """Enqueue every delivery that is due (and was not picked up within the grace period)."""
        with transaction(self.sessions) as session:
            due: list[uuid.UUID] = list(session.scalars(_DUE, {"grace": grace_seconds, "limit": limit}).all())
        for delivery_id in due:
            self.broker.enqueue(webhook_deliver(delivery_id))
        if due:
            log.info("webhook.sweep_enqueued", count=len(due))
        return len(due)

    def sweep_safely(self, *, grace_seconds: float) -> None:
        try:
            self.sweep(grace_seconds=grace_seconds)
        except Exception:
            log.exception("webhook.sweep_failed")


def backoff_seconds(settings: WebhookSettings, attempts: int) -> float:
    return float(min(settings.backoff_seconds * 2 ** (attempts - 1), settings.max_backoff_seconds))


def _read_capped(response: httpx.Response, *, deadline: float) -> None:
    """Read (and drop) the start of the response body: at most MAX_RESPONSE_BYTES, raw, until the deadline."""
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if read >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
            return


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def make_webhook_sender(sessions: sessionmaker[Session], broker: RedisBroker, policy: Settings) -> WebhookSender:
    settings = WebhookSettings.of(policy)
    client = httpx.Client(
        timeout=settings.timeout_seconds,
        # No redirects: a receiver must not be able to bounce a signed request to somewhere else.
        follow_redirects=False,
        # No HTTP(S)_PROXY/NO_PROXY or .netrc from the environment: the checked address is the one connected to.
        trust_env=False,
        # Connections are pooled by address; one opened for another host name on the same address (and verified
        # for that name) must not carry this request.
        limits=httpx.Limits(max_keepalive_connections=0),
    )
    return WebhookSender(sessions=sessions, broker=broker, settings=settings, client=client)


def register_webhook_actor(broker: RedisBroker, sender: WebhookSender) -> None:
    def deliver(delivery_id: str) -> None:
        with structlog.contextvars.bound_contextvars(webhook_delivery_id=delivery_id):
            metrics.webhook_delivery(sender.deliver(uuid.UUID(delivery_id)))

    dramatiq.actor(
        broker=broker,
        actor_name=ActorName.webhook_deliver.value,
        queue_name=Queue.webhooks.value,
        # Retries are scheduled on the row (with their own backoff and bound), not by dramatiq; an actor crash
        # leaves the row claimed until its lease ends and the sweep picks it up again.
        max_retries=0,
        time_limit=int((sender.settings.timeout_seconds + 30) * 1000),
    )(deliver)
