"""Timelines (derived: a later link shows everywhere at once) and the deal chooser."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from shared.models import MessagePersonRole
from tests.api.conftest import MailStore, collect


def test_timelines_merge_mail_activities_and_deal_events_newest_first(api: httpx.Client, mail: MailStore) -> None:
    organization = api.post("/v1/organizations", json={"name": "Customer"}).json()
    jane = api.post(
        "/v1/persons", json={"name": "Jane", "phone": "+1 555 0100", "organization_id": organization["id"]}
    ).json()
    deal = api.post("/v1/deals", json={"title": "Rollout", "person_id": jane["id"]}).json()
    api.post(
        "/v1/activities",
        json={"type": "call", "subject": "Kick-off", "due_at": "2030-01-01T09:00:00Z", "person_id": jane["id"]},
    )
    thread = mail.thread("Proposal")
    mail.message(
        thread,
        subject="Proposal",
        text="> old quote\nFull text",
        new_text="Here is the proposal",
        persons=[(jane["id"], MessagePersonRole.from_)],
        attachments=[("p.pdf", "application/pdf", b"%PDF")],
        sent_at=datetime(2026, 6, 1, tzinfo=UTC),
    )

    entries = api.get(f"/v1/persons/{jane['id']}/timeline").json()["data"]
    assert [e["kind"] for e in entries] == ["activity", "deal_event", "message"]
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    message = entries[2]["message"]
    assert message["preview"] == "Here is the proposal"
    assert (message["attachment_count"], message["subject"], message["deal_id"]) == (1, "Proposal", None)
    assert entries[0]["activity"]["subject"] == "Kick-off"
    assert entries[1]["deal_event"]["type"] == "created"
    assert [e["kind"] for e in api.get(f"/v1/organizations/{organization['id']}/timeline").json()["data"]] == [
        "activity",
        "deal_event",
        "message",
    ]

    # The deal sees the mail only once the thread is linked; then at once, everywhere.
    assert [e["kind"] for e in api.get(f"/v1/deals/{deal['id']}/timeline").json()["data"]] == ["deal_event"]
    api.patch(f"/v1/threads/{thread}", json={"deal_id": deal["id"]})
    deal_entries = api.get(f"/v1/deals/{deal['id']}/timeline").json()["data"]
    assert [e["kind"] for e in deal_entries] == ["deal_event", "message"]
    assert api.get(f"/v1/persons/{jane['id']}/timeline").json()["data"][2]["message"]["deal_id"] == deal["id"]


def test_timeline_pages_are_exact(api: httpx.Client, mail: MailStore) -> None:
    jane = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    thread = mail.thread("Many")
    same = datetime(2026, 2, 2, tzinfo=UTC)
    for n in range(5):
        mail.message(thread, persons=[(jane["id"], MessagePersonRole.to)], sent_at=same if n < 3 else None)
    for n in range(4):
        api.post("/v1/activities", json={"type": "task", "subject": f"T{n}", "person_id": jane["id"]})
    entries = collect(api, f"/v1/persons/{jane['id']}/timeline", limit=2)
    assert len(entries) == len({e["id"] for e in entries}) == 9
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)
    assert api.get(f"/v1/persons/{jane['id']}/timeline", params={"cursor": "eyJ4Ijp9"}).status_code == 400


def test_resolving_a_disambiguation_links_the_whole_thread(api: httpx.Client, mail: MailStore) -> None:
    jane = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    first = api.post("/v1/deals", json={"title": "Licences", "person_id": jane["id"]}).json()
    second = api.post("/v1/deals", json={"title": "Support", "person_id": jane["id"]}).json()
    thread = mail.thread("Renewal")
    for _ in range(3):
        mail.message(thread, persons=[(jane["id"], MessagePersonRole.from_)])
    question = mail.disambiguation(
        thread, [(first["id"], ["open deal of Jane"]), (second["id"], ["open deal of Jane"])]
    )

    pending = api.get("/v1/disambiguations").json()["data"]
    assert [d["id"] for d in pending] == [question]
    item = pending[0]
    assert item["thread"]["id"] == thread
    assert item["thread"]["message_count"] == 3
    assert [(c["deal_id"], c["deal"]["title"], c["reasons"]) for c in item["candidates"]] == [
        (first["id"], "Licences", ["open deal of Jane"]),
        (second["id"], "Support", ["open deal of Jane"]),
    ]
    assert [
        d["id"] for d in api.get("/v1/disambiguations", params={"user_id": str(mail.tenant.user_id)}).json()["data"]
    ] == [question]
    assert api.get("/v1/disambiguations", params={"user_id": "me"}).json()["data"] == []  # account-wide token

    resolved = api.post(f"/v1/disambiguations/{question}/resolve", json={"deal_id": second["id"]})
    assert resolved.status_code == 200
    assert (resolved.json()["status"], resolved.json()["resolved_deal_id"]) == ("resolved", second["id"])
    assert api.get("/v1/disambiguations").json()["data"] == []
    assert [d["id"] for d in api.get("/v1/disambiguations", params={"status": "resolved"}).json()["data"]] == [question]
    linked = api.get(f"/v1/threads/{thread}").json()
    assert (linked["deal_id"], linked["deal_rule"]) == (second["id"], "user-choice")
    assert {m["deal_id"] for m in linked["messages"]} == {second["id"]}
    assert len([e for e in api.get(f"/v1/deals/{second['id']}/timeline").json()["data"] if e["kind"] == "message"]) == 3

    again = api.post(f"/v1/disambiguations/{question}/resolve", json={"deal_id": None})
    assert again.status_code == 409


def test_declining_every_candidate(api: httpx.Client, mail: MailStore) -> None:
    jane = api.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
    deal = api.post("/v1/deals", json={"title": "Licences", "person_id": jane["id"]}).json()
    thread = mail.thread("Chit-chat")
    mail.message(thread)
    question = mail.disambiguation(thread, [(deal["id"], ["open deal of Jane"])])
    bad = api.post(f"/v1/disambiguations/{question}/resolve", json={"deal_id": "nope"})
    assert bad.status_code == 422
    assert api.post(f"/v1/disambiguations/{question}/resolve", json={}).status_code == 422
    declined = api.post(f"/v1/disambiguations/{question}/resolve", json={"deal_id": None}).json()
    assert (declined["status"], declined["resolved_deal_id"]) == ("resolved", None)
    thread_now = api.get(f"/v1/threads/{thread}").json()
    assert (thread_now["deal_id"], thread_now["deal_rule"]) == (None, "user-declined")
