"""Webhook subscriptions and their delivery log. Admin scope."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from services.api.common import Page
from services.api.deps import CurrentCaller, DbSession, parse_id, require_admin
from services.api.pagination import DEFAULT_LIMIT, Cursor, Limit
from services.api.webhooks import service
from services.api.webhooks.schemas import Attempt, DeliveryOut, WebhookIn, WebhookOut, WebhookPatch, WebhookWithSecret
from shared.events import WebhookSettings
from shared.models import WebhookDelivery, WebhookDeliveryStatus, WebhookSubscription

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(require_admin)])


def _settings(request: Request) -> WebhookSettings:
    settings: WebhookSettings = request.app.state.webhook_settings
    return settings


@router.get("", response_model=Page[WebhookOut])
def list_webhooks(
    caller: CurrentCaller, session: DbSession, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> Page[WebhookOut]:
    rows, next_cursor = service.list_webhooks(session, caller, cursor, limit)
    return Page[WebhookOut](data=[_out(w) for w in rows], next_cursor=next_cursor)


@router.post("", response_model=WebhookWithSecret, status_code=status.HTTP_201_CREATED)
def create_webhook(request: Request, body: WebhookIn, caller: CurrentCaller, session: DbSession) -> WebhookWithSecret:
    """Subscribe a URL to events. Keep the returned `secret`: it is shown only now."""
    webhook = service.create_webhook(
        session,
        caller,
        _settings(request),
        url=body.url,
        events=list(body.events),
        description=body.description,
        active=body.active,
    )
    return WebhookWithSecret(**_out(webhook).model_dump(), secret=webhook.secret)


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: str, caller: CurrentCaller, session: DbSession) -> WebhookOut:
    return _out(service.get_webhook(session, caller, parse_id(webhook_id, "Webhook")))


@router.patch("/{webhook_id}", response_model=WebhookOut)
def update_webhook(
    request: Request, webhook_id: str, body: WebhookPatch, caller: CurrentCaller, session: DbSession
) -> WebhookOut:
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    webhook = service.update_webhook(session, caller, _settings(request), parse_id(webhook_id, "Webhook"), changes)
    return _out(webhook)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookWithSecret)
def rotate_secret(webhook_id: str, caller: CurrentCaller, session: DbSession) -> WebhookWithSecret:
    """A new signing secret, effective for every delivery attempted from now on."""
    webhook = service.rotate_secret(session, caller, parse_id(webhook_id, "Webhook"))
    return WebhookWithSecret(**_out(webhook).model_dump(), secret=webhook.secret)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_webhook(webhook_id: str, caller: CurrentCaller, session: DbSession) -> Response:
    service.delete_webhook(session, caller, parse_id(webhook_id, "Webhook"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=Page[DeliveryOut])
def list_deliveries(
    webhook_id: str,
    caller: CurrentCaller,
    session: DbSession,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
    status: WebhookDeliveryStatus | None = None,
) -> Page[DeliveryOut]:
    """The delivery log, newest first: every event sent (or being sent) to this webhook, with each attempt."""
    rows, next_cursor = service.list_deliveries(session, caller, parse_id(webhook_id, "Webhook"), status, cursor, limit)
    return Page[DeliveryOut](data=[_delivery(d) for d in rows], next_cursor=next_cursor)


@router.get("/{webhook_id}/deliveries/{delivery_id}", response_model=DeliveryOut)
def get_delivery(webhook_id: str, delivery_id: str, caller: CurrentCaller, session: DbSession) -> DeliveryOut:
    found = service.get_delivery(session, caller, parse_id(webhook_id, "Webhook"), parse_id(delivery_id, "Delivery"))
    return _delivery(found)


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut)
def redeliver(webhook_id: str, delivery_id: str, caller: CurrentCaller, session: DbSession) -> DeliveryOut:
    """Send a succeeded or failed delivery again (e.g. after fixing the receiver)."""
    found = service.redeliver(session, caller, parse_id(webhook_id, "Webhook"), parse_id(delivery_id, "Delivery"))
    return _delivery(found)


def _out(webhook: WebhookSubscription) -> WebhookOut:
    return WebhookOut(
        id=str(webhook.id),
        url=webhook.url,
        events=list(webhook.events),
        description=webhook.description,
        active=webhook.active,
        created_at=webhook.created_at,
    )


def _delivery(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=str(delivery.id),
        webhook_id=str(delivery.subscription_id),
        event=delivery.event,
        event_id=str(delivery.event_id),
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if delivery.status == WebhookDeliveryStatus.pending else None,
        delivered_at=delivery.delivered_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        attempt_log=[Attempt.model_validate(entry) for entry in delivery.attempt_log],
        payload=delivery.payload,
        created_at=delivery.created_at,
    )
