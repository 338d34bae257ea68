"""Recurring deals: the worker opens the next deal of a won deal's series when its period comes due, never twice."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.recurring import Recurrences, add_months
from shared.broker import make_broker
from shared.db import transaction
from shared.models import CreatedFrom, Deal, DealStatus, Organization
from tests.conftest import Infra, new_tenant
from tests.support.stack import wait_for


def test_months_are_added_without_drifting_off_month_ends() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 1, 31), 2) == date(2026, 3, 31)  # from the anchor, not from 28 February
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)


def _successors(api: httpx.Client, deal_id: str) -> list[dict[str, Any]]:
    deals: list[dict[str, Any]] = api.get("/v1/deals", params={"limit": 200}).json()["data"]
    return [d for d in deals if d["recurs_from_deal_id"] == deal_id]


def test_a_won_monthly_deal_opens_its_next_period_and_the_series_goes_on(api: httpx.Client) -> None:
    api.post("/v1/custom-fields", json={"entity": "deal", "key": "plan", "label": "Plan", "type": "text"})
    pipeline = api.post("/v1/pipelines", json={"name": "Subscriptions"}).json()
    organization = api.post("/v1/organizations", json={"name": "Acme"}).json()
    created = api.post(
        "/v1/deals",
        json={
            "title": "Acme Pro plan",
            "organization_id": organization["id"],
            "pipeline_id": pipeline["id"],
            "status": "won",
            "won_at": "2026-01-31T10:00:00+00:00",
            "value": "490.00",
            "currency": "EUR",
            "recurrence": "monthly",
            "custom_fields": {"plan": "Pro"},
        },
    )
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["recurrence"] == "monthly"

    [second] = wait_for(lambda: _successors(api, first["id"]), what="the worker to open February's deal")
    assert (second["status"], second["expected_close_date"], second["title"]) == ("open", "2026-02-28", "Acme Pro plan")
    assert (second["value"], second["currency"], second["custom_fields"]) == ("490.00", "EUR", {"plan": "Pro"})
    assert second["recurrence"] == "monthly"
    assert second["stage_id"] == pipeline["stages"][0]["id"]  # a renewal starts at the beginning of the pipeline
    assert second["created_by"]["name"] == "Mailroom recurring deals"

    # Not won yet: no third deal, however often the sweep runs. Winning it schedules the next period.
    won = api.patch(f"/v1/deals/{second['id']}", json={"status": "won", "won_at": "2026-03-02T09:00:00+00:00"})
    assert won.status_code == 200, won.text
    [third] = wait_for(lambda: _successors(api, second["id"]), what="the worker to open March's deal")
    assert third["expected_close_date"] == "2026-03-31"  # counted from 31 January, not from 28 February
    assert len(_successors(api, first["id"])) == 1


def test_deals_without_a_due_period_get_no_successor(api: httpx.Client) -> None:
    organization = api.post("/v1/organizations", json={"name": "Globex"}).json()
    base = {"organization_id": organization["id"], "recurrence": "yearly"}
    fresh = api.post("/v1/deals", json={**base, "title": "Won today", "status": "won"}).json()
    still_open = api.post("/v1/deals", json={**base, "title": "Open", "won_at": None}).json()
    lost = api.post(
        "/v1/deals", json={**base, "title": "Lost", "status": "lost", "lost_at": "2025-01-01T00:00:00+00:00"}
    ).json()
    # A deal whose period is due, created after the others: once it has its successor, the sweep has seen them all.
    marker = api.post(
        "/v1/deals",
        json={**base, "title": "Due", "status": "won", "won_at": "2024-06-01T00:00:00+00:00"},
    ).json()
    wait_for(lambda: _successors(api, marker["id"]), what="the due deal's successor")
    for deal in (fresh, still_open, lost):
        assert _successors(api, deal["id"]) == []


@pytest.fixture
def recurrences(infra: Infra, quiet_sessions: sessionmaker[Session]) -> Iterator[Recurrences]:
    broker: RedisBroker = make_broker(infra.redis_url, f"recurring-test-{uuid.uuid4().hex[:8]}")
    yield Recurrences(sessions=quiet_sessions, broker=broker)
    broker.close()


def test_racing_workers_open_one_successor(recurrences: Recurrences, quiet_sessions: sessionmaker[Session]) -> None:
    tenant = new_tenant(quiet_sessions)
    with transaction(quiet_sessions) as session:
        organization = Organization(account_id=tenant.account_id, name="Initech", created_from=CreatedFrom.api)
        session.add(organization)
        session.flush()
        deal = Deal(
            account_id=tenant.account_id,
            title="Initech support",
            organization_id=organization.id,
            status=DealStatus.won,
            won_at=datetime(2026, 5, 15, tzinfo=UTC),
            value=Decimal("100.00"),
            currency="USD",
            recurrence="quarterly",
        )
        session.add(deal)
        session.flush()
        deal_id = deal.id

    outcomes: list[str] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        outcomes.append(recurrences.recur(deal_id, today=date(2026, 8, 15)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created"] + ["exists"] * 7
    assert recurrences.recur(deal_id, today=date(2027, 1, 1)) == "exists"  # and again, any time later
    with quiet_sessions() as session:
        [successor] = session.scalars(select(Deal).where(Deal.recurs_from_deal_id == deal_id)).all()
    assert successor.expected_close_date == date(2026, 8, 15)
    assert (successor.recurrence_anchor, successor.recurrence_index) == (date(2026, 5, 15), 1)

    # The day before the period begins, nothing is due.
    with transaction(quiet_sessions) as session:
        later = session.get_one(Deal, successor.id)
        later.status = DealStatus.won
        later.won_at = datetime(2026, 8, 20, tzinfo=UTC)
    assert recurrences.recur(successor.id, today=date(2026, 11, 14)) == "not-due"
    assert recurrences.recur(successor.id, today=date(2026, 11, 15)) == "created"
