"""Webhook subscriptions and their delivery log (deliveries are written by shared.events.emit)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from services.api.deps import Caller
from services.api.pagination import page_rows, paginate
from services.api.problems import conflict, invalid, not_found
from shared.broker import webhook_deliver
from shared.events import WebhookSettings, enqueue_after_commit, new_secret
from shared.models import WebhookDelivery, WebhookDeliveryStatus, WebhookEvent, WebhookSubscription
from shared.public_addresses import refusal_reason_of_text


def check_url(url: str, settings: WebhookSettings) -> str:
    """Refuse what can never be a public receiver. Names are resolved (and re-checked) at every delivery."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("url", "must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise invalid("url", "must not contain credentials; verify the signature instead")
    if not settings.allow_private_targets:
        host = parts.hostname
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise invalid("url", "must be reachable on the public internet")
        reason = refusal_reason_of_text(host)
        if reason is not None:
            raise invalid("url", f"must be reachable on the public internet, not a {reason}")
    return url.strip()


def list_webhooks(
    session: Session, caller: Caller, cursor: str | None, limit: int
) -> tuple[list[WebhookSubscription], str | None]:
    query = select(WebhookSubscription).where(WebhookSubscription.account_id == caller.account_id)
    rows = session.scalars(paginate(query, WebhookSubscription.created_at, WebhookSubscription.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda w: (w.created_at, w.id))


def get_webhook(session: Session, caller: Caller, webhook_id: uuid.UUID) -> WebhookSubscription:
    found = session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.account_id == caller.account_id, WebhookSubscription.id == webhook_id
        )
    ).one_or_none()
    if found is None:
        raise not_found("Webhook")
    return found


def create_webhook(
    session: Session,
    caller: Caller,
    settings: WebhookSettings,
    *,
    url: str,
    events: list[WebhookEvent],
    description: str | None,
    active: bool,
) -> WebhookSubscription:
    webhook = WebhookSubscription(
        account_id=caller.account_id,
        url=check_url(url, settings),
        events=sorted(set(events)),
        secret=new_secret(),
        description=description,
        active=active,
    )
    session.add(webhook)
    session.flush()
    return webhook


def update_webhook(
    session: Session, caller: Caller, settings: WebhookSettings, webhook_id: uuid.UUID, changes: dict[str, object]
) -> WebhookSubscription:
    webhook = get_webhook(session, caller, webhook_id)
    for field, value in changes.items():
        if value is None and field != "description":
            raise invalid(field, "must not be null")
        if field == "url":
            webhook.url = check_url(str(value), settings)
        elif field == "events":
            webhook.events = sorted(set(value))  # type: ignore[call-overload]  # a validated list of names
        else:
            setattr(webhook, field, value)
    return webhook


def rotate_secret(session: Session, caller: Caller, webhook_id: uuid.UUID) -> WebhookSubscription:
    webhook = get_webhook(session, caller, webhook_id)
    webhook.secret = new_secret()
    return webhook


def delete_webhook(session: Session, caller: Caller, webhook_id: uuid.UUID) -> None:
    """Deletes the subscription and its delivery log; nothing more is sent."""
    session.delete(get_webhook(session, caller, webhook_id))


def list_deliveries(
    session: Session,
    caller: Caller,
    webhook_id: uuid.UUID,
    status: WebhookDeliveryStatus | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[WebhookDelivery], str | None]:
    webhook = get_webhook(session, caller, webhook_id)
    query = select(WebhookDelivery).where(
        WebhookDelivery.account_id == caller.account_id, WebhookDelivery.subscription_id == webhook.id
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    rows = session.scalars(paginate(query, WebhookDelivery.created_at, WebhookDelivery.id, cursor, limit)).all()
    return page_rows(rows, limit, lambda d: (d.created_at, d.id))


def get_delivery(
    session: Session, caller: Caller, webhook_id: uuid.UUID, delivery_id: uuid.UUID, *, for_update: bool = False
) -> WebhookDelivery:
    query = select(WebhookDelivery).where(
        WebhookDelivery.account_id == caller.account_id,
        WebhookDelivery.subscription_id == webhook_id,
        WebhookDelivery.id == delivery_id,
    )
    delivery = session.scalars(query.with_for_update() if for_update else query).one_or_none()
    if delivery is None:
        raise not_found("Delivery")
    return delivery


def redeliver(session: Session, caller: Caller, webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> WebhookDelivery:
    """Send a finished delivery again, with a fresh retry budget; its attempt log continues."""
    delivery = get_delivery(session, caller, webhook_id, delivery_id, for_update=True)
    if delivery.status == WebhookDeliveryStatus.pending:
        raise conflict("This delivery is still pending; it will be attempted again on its own.")
    # The database clock decides when a delivery is due, so "now" comes from it too.
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id)
        .values(status=WebhookDeliveryStatus.pending, attempts=0, delivered_at=None, next_attempt_at=func.now())
    )
    session.refresh(delivery)
    enqueue_after_commit(session, webhook_deliver(delivery.id))
    return delivery
