""" "Who set it": every CRM record and timeline entry says which user, integration or matcher rule made it."""

from __future__ import annotations

import uuid

import httpx

from tests.api.conftest import MailStore, client
from tests.support.stack import Stack, make_mail, send, wait_for


def test_records_say_which_user_or_integration_made_and_changed_them(
    api_stack: Stack, api: httpx.Client, mail: MailStore
) -> None:
    user_id = str(mail.tenant.user_id)
    zapier = api.post("/v1/tokens", json={"scope": "write", "name": "Zapier"}).json()
    sams = api.post("/v1/tokens", json={"scope": "write", "user_id": user_id}).json()
    with client(api_stack, zapier["token"]) as integration, client(api_stack, sams["token"]) as sam:
        person = integration.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
        by_zapier = {"kind": "integration", "name": "Zapier", "user_id": None, "token_id": zapier["id"]}
        assert {k: person["created_by"][k] for k in by_zapier} == by_zapier
        assert person["updated_by"] == person["created_by"]

        renamed = sam.patch(f"/v1/persons/{person['id']}", json={"name": "Jane Doe"}).json()
        by_sam = {"kind": "user", "name": "Sam Seller", "user_id": user_id, "token_id": sams["id"]}
        assert {k: renamed["updated_by"][k] for k in by_sam} == by_sam
        assert renamed["created_by"] == person["created_by"]
        assert renamed["updated_at"] is not None

        organization = sam.post("/v1/organizations", json={"name": "Acme"}).json()
        deal = sam.post("/v1/deals", json={"title": "Rollout", "person_id": person["id"]}).json()
        activity = integration.post("/v1/activities", json={"type": "call", "subject": "Call", "deal_id": deal["id"]})
        note = sam.post("/v1/notes", json={"content": "Hot", "deal_id": deal["id"]}).json()
        lead = integration.post("/v1/leads", json={"name": "Lee", "phone": "+1 555 0101"}).json()
        assert organization["created_by"]["kind"] == "user"
        assert deal["created_by"]["kind"] == "user"
        assert activity.json()["created_by"]["name"] == "Zapier"
        assert note["created_by"]["name"] == "Sam Seller"
        assert lead["created_by"]["name"] == "Zapier"
        integration.patch(f"/v1/deals/{deal['id']}", json={"status": "won"})

    entries = api.get(f"/v1/deals/{deal['id']}/timeline").json()["data"]
    badges = {
        (e["kind"], (e.get("activity") or e.get("note") or {}).get("created_by", {}).get("name"))
        for e in entries
        if e["kind"] in ("activity", "note")
    }
    assert badges == {("activity", "Zapier"), ("note", "Sam Seller")}
    events = {e["deal_event"]["type"]: e["deal_event"]["actor"]["name"] for e in entries if e["kind"] == "deal_event"}
    assert events == {"created": "Sam Seller", "status_changed": "Zapier"}


def test_records_the_matcher_made_name_its_rule_and_message(
    api_stack: Stack, api: httpx.Client, mail: MailStore
) -> None:
    assert api.patch("/v1/account", json={"create_organizations": True}).status_code == 200
    customer = f"dana.{uuid.uuid4().hex[:6]}@customer-{uuid.uuid4().hex[:4]}.example"
    sent = make_mail(
        sender=f"Sam Seller <{mail.tenant.user_email}>",
        to=[f"Dana <{customer}>"],
        subject="Quote",
        body="Hi Dana, the quote follows.\n",
        message_id=f"<quote-{uuid.uuid4().hex}@acme.example>",
    )
    send(api_stack.smtp_port, [mail.tenant.bcc_address], sent, sender=mail.tenant.user_email)

    def created() -> dict[str, object] | None:
        found = api.get("/v1/persons", params={"email": customer}).json()["data"]
        return found[0] if found else None

    person = wait_for(created, timeout=60, what="the matcher to create the person")
    [message] = api.get("/v1/messages", params={"limit": 1}).json()["data"]
    badge = person["created_by"]
    assert isinstance(badge, dict)
    assert badge["kind"] == "matcher"
    assert badge["rule"] == person["created_by_rule"]
    assert badge["rule"]
    assert badge["message_id"] == message["id"]
    assert person["updated_by"] is None  # nobody changed it since
    organization = api.get(f"/v1/organizations/{person['organization_id']}").json()
    assert organization["created_by"]["kind"] == "matcher"
    assert organization["created_by"]["message_id"] == message["id"]
