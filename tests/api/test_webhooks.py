"""Webhooks: signed deliveries checked by an independent receiver, retries with backoff, the delivery log."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import WEBHOOK_MAX_ATTEMPTS, MailStore
from tests.support.stack import wait_for
from tests.support.webhooks import Receiver, subscribe


def test_events_arrive_signed_and_are_logged(api: httpx.Client, mail: MailStore, receiver: Receiver) -> None:
    webhook = subscribe(api, receiver, ["person.created", "thread.linked"])
    assert "secret" not in api.get(f"/v1/webhooks/{webhook['id']}").json()

    jane = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    [event] = wait_for(lambda: receiver.events("person.created"), what="person.created at the receiver")
    assert event["data"] == {
        "person_id": jane["id"],
        "addresses": [],
        "created_from": "api",
        "created_by_rule": None,
        "created_by_message_id": None,
    }
    assert event["account_id"] == str(mail.tenant.account_id)
    assert event["_headers"]["Mailroom-Event"] == "person.created"
    assert event["_headers"]["Mailroom-Event-Id"] == event["id"]
    assert receiver.rejected == 0

    deal = api.post("/v1/deals", json={"title": "Rollout", "person_id": jane["id"]}).json()
    thread = mail.thread("Which one")
    mail.message(thread)
    question = mail.disambiguation(thread, [(deal["id"], ["open deal of Jane"])])
    api.post(f"/v1/disambiguations/{question}/resolve", json={"deal_id": deal["id"]})
    [linked] = wait_for(lambda: receiver.events("thread.linked"), what="thread.linked at the receiver")
    assert linked["data"]["thread_id"] == thread
    assert linked["data"]["deal_id"] == deal["id"]
    assert linked["data"]["deal_rule"] == "user-choice"

    def all_succeeded() -> list[dict[str, Any]] | None:
        data: list[dict[str, Any]] = api.get(f"/v1/webhooks/{webhook['id']}/deliveries").json()["data"]
        return data if len(data) == 2 and all(d["status"] == "succeeded" for d in data) else None

    log = wait_for(all_succeeded, what="the delivery log to show both succeeded")
    assert [d["event"] for d in log] == ["thread.linked", "person.created"]
    assert all(d["attempts"] == 1 and d["attempt_log"][0]["status_code"] == 204 for d in log)
    assert (
        api.get(f"/v1/webhooks/{webhook['id']}/deliveries/{log[0]['id']}").json()["payload"]["type"] == "thread.linked"
    )

    # A rotated secret signs every later delivery; the receiver that keeps the old one rejects them.
    old_secret = receiver.secret
    receiver.secret = api.post(f"/v1/webhooks/{webhook['id']}/rotate-secret").json()["secret"]
    assert receiver.secret != old_secret
    api.post("/v1/persons", json={"name": "After rotation", "phone": "+1 555 0100"})
    wait_for(lambda: len(receiver.events("person.created")) == 2, what="a delivery signed with the new secret")


def test_a_failing_receiver_gets_retries_then_a_redelivery(
    api: httpx.Client, mail: MailStore, receiver: Receiver
) -> None:
    webhook = subscribe(api, receiver, ["person.created"])
    receiver.failures_left = 1
    api.post("/v1/persons", json={"name": "Retry me", "phone": "+1 555 0100"})

    def delivered() -> dict[str, Any] | None:
        [delivery] = api.get(f"/v1/webhooks/{webhook['id']}/deliveries").json()["data"]
        return delivery if delivery["status"] == "succeeded" else None

    delivery = wait_for(delivered, timeout=30, what="the retry to succeed")
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 204]
    assert delivery["attempts"] == 2
    assert len(receiver.events("person.created")) == 1

    # Every attempt fails: the delivery ends `failed` after the bounded number of attempts, nothing more is sent.
    receiver.failures_left = 100
    api.post("/v1/persons", json={"name": "Doomed", "phone": "+1 555 0100"})

    def failed() -> dict[str, Any] | None:
        deliveries = api.get(f"/v1/webhooks/{webhook['id']}/deliveries", params={"status": "failed"}).json()["data"]
        return deliveries[0] if deliveries else None

    doomed = wait_for(failed, timeout=30, what="the delivery to fail for good")
    assert doomed["attempts"] == WEBHOOK_MAX_ATTEMPTS
    assert [a["status_code"] for a in doomed["attempt_log"]] == [500] * WEBHOOK_MAX_ATTEMPTS
    assert doomed["last_error"] == "HTTP 500"
    gaps = [a["at"] for a in doomed["attempt_log"]]
    assert gaps == sorted(gaps)

    receiver.failures_left = 0
    again = api.post(f"/v1/webhooks/{webhook['id']}/deliveries/{doomed['id']}/redeliver")
    assert again.status_code == 200
    assert again.json()["status"] == "pending"
    wait_for(
        lambda: api.get(f"/v1/webhooks/{webhook['id']}/deliveries/{doomed['id']}").json()["status"] == "succeeded",
        what="the redelivery",
    )
    assert len(receiver.events("person.created")) == 2


def test_subscription_management_and_validation(api: httpx.Client, receiver: Receiver) -> None:
    webhook = subscribe(api, receiver, ["message.stored"])
    assert api.post("/v1/webhooks", json={"url": "ftp://x.example/", "events": ["message.stored"]}).status_code == 422
    assert api.post("/v1/webhooks", json={"url": receiver.url, "events": ["nope"]}).status_code == 422
    assert api.post("/v1/webhooks", json={"url": receiver.url, "events": []}).status_code == 422
    paused = api.patch(f"/v1/webhooks/{webhook['id']}", json={"active": False, "events": ["person.created"]}).json()
    assert (paused["active"], paused["events"]) == (False, ["person.created"])
    api.post("/v1/persons", json={"name": "Nobody listens", "phone": "+1 555 0100"})
    assert api.get(f"/v1/webhooks/{webhook['id']}/deliveries").json()["data"] == []
    assert [w["id"] for w in api.get("/v1/webhooks").json()["data"]] == [webhook["id"]]
    assert api.delete(f"/v1/webhooks/{webhook['id']}").status_code == 204
    assert api.get(f"/v1/webhooks/{webhook['id']}").status_code == 404
