"""Leads: the e-mail-or-phone rule, their Smart-BCC sub-address, and the one-step conversion into a person,
organization and deal — once, whatever the retries and races."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import transaction
from shared.models import Deal, Person, Thread, ThreadParticipant
from tests.api.conftest import MailStore, client
from tests.support.stack import Stack, make_mail, send, wait_for

NEEDS_CONTACT = "Can't save a lead: it needs at least an email or a phone number."


def _lead(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/leads", json={"name": "Lee Prospect", **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_lead_or_person_needs_an_email_or_a_phone(api: httpx.Client) -> None:
    refused = api.post("/v1/leads", json={"name": "Nobody", "company": "Nowhere Ltd"})
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["detail"] == NEEDS_CONTACT
    assert {e["field"] for e in refused.json()["errors"]} == {"email", "phone"}

    by_phone = _lead(api, phone="+44 20 7946 0000")
    by_mail = _lead(api, email="Lee@Prospect.example", company="Prospect Ltd", source="trade fair")
    assert (by_mail["email"], by_mail["status"], by_mail["source"]) == ("lee@prospect.example", "new", "trade fair")
    # Taking the phone away from the lead that has nothing else is refused too.
    emptied = api.patch(f"/v1/leads/{by_phone['id']}", json={"phone": None})
    assert emptied.status_code == 422
    assert emptied.json()["detail"] == NEEDS_CONTACT

    person = api.post("/v1/persons", json={"name": "Nobody"})
    assert person.status_code == 422
    assert person.json()["detail"] == "Can't save a person: it needs at least an email or a phone number."
    jane = api.post("/v1/persons", json={"name": "Jane", "emails": ["jane@customer.example"]}).json()
    assert api.patch(f"/v1/persons/{jane['id']}", json={"emails": []}).status_code == 422
    assert api.patch(f"/v1/persons/{jane['id']}", json={"emails": [], "phone": "+1 555 0100"}).status_code == 200

    # `converted` is reached by converting, not by hand.
    assert api.patch(f"/v1/leads/{by_mail['id']}", json={"status": "converted"}).status_code == 422
    moved = api.patch(f"/v1/leads/{by_mail['id']}", json={"status": "qualified", "value": "5000", "currency": "EUR"})
    assert (moved.json()["status"], moved.json()["value"]) == ("qualified", "5000.00")
    listed = api.get("/v1/leads", params={"status": "qualified"}).json()["data"]
    assert [lead["id"] for lead in listed] == [by_mail["id"]]


def test_leads_and_deals_show_their_smart_bcc_sub_address(api_stack: Stack, api: httpx.Client, mail: MailStore) -> None:
    local_part = mail.tenant.bcc_address.split("@")[0]
    # An account token has no Smart-BCC address of its own: the owner's is shown, and none without an owner.
    unowned = _lead(api, phone="+1 555 0100")
    assert unowned["bcc_address"] is None
    owned = _lead(api, phone="+1 555 0100", owner_user_id=str(mail.tenant.user_id))
    assert owned["bcc_address"] == f"{local_part}+lead-{owned['id']}@bcc.mailroom.localhost"

    token = api.post("/v1/tokens", json={"scope": "write", "user_id": str(mail.tenant.user_id)}).json()["token"]
    with client(api_stack, token) as sam:
        lead = sam.post("/v1/leads", json={"name": "Lee", "phone": "+1 555 0100"}).json()
        assert lead["owner_user_id"] == str(mail.tenant.user_id)
        assert lead["bcc_address"] == f"{local_part}+lead-{lead['id']}@bcc.mailroom.localhost"
        person = sam.post("/v1/persons", json={"name": "Jane", "phone": "+1 555 0100"}).json()
        deal = sam.post("/v1/deals", json={"title": "Rollout", "person_id": person["id"]}).json()
        assert deal["bcc_address"] == f"{local_part}+deal-{deal['id']}@bcc.mailroom.localhost"
        assert sam.get(f"/v1/deals/{deal['id']}").json()["bcc_address"] == deal["bcc_address"]


def _lead_thread(
    sessions: sessionmaker[Session], mail: MailStore, lead: dict[str, Any], *, tagged: bool, address: str
) -> tuple[str, str]:
    """A thread about the lead, as the matcher leaves it: tagged with the lead (mail to its sub-address) or just
    with the lead's address among its participants."""
    thread_id = mail.thread("Your enquiry")
    message_id = mail.message(
        thread_id, subject="Your enquiry", sender=("Lee Prospect", address), new_text="Interested in 50 seats"
    )
    with transaction(sessions) as session:
        thread = session.get_one(Thread, uuid.UUID(thread_id))
        if tagged:
            thread.lead_id = uuid.UUID(lead["id"])
        session.add(ThreadParticipant(account_id=mail.tenant.account_id, thread_id=thread.id, address=address))
    return thread_id, message_id


def test_convert_creates_person_organization_and_deal_and_carries_the_history(
    api: httpx.Client, mail: MailStore, api_sessions: sessionmaker[Session]
) -> None:
    address = f"lee.{uuid.uuid4().hex[:6]}@prospect.example"
    pipeline = api.post("/v1/pipelines", json={"name": "Inbound"}).json()
    lead = _lead(api, email=address, phone="+44 1", company="Prospect Ltd", value="12000", currency="GBP")
    thread_id, message_id = _lead_thread(api_sessions, mail, lead, tagged=True, address=address)
    call = api.post("/v1/activities", json={"type": "call", "subject": "Discovery call", "lead_id": lead["id"]}).json()
    note = api.post("/v1/notes", json={"content": "Budget approved in Q1", "lead_id": lead["id"]}).json()
    before = {e["id"] for e in api.get(f"/v1/leads/{lead['id']}/timeline").json()["data"]}
    assert before == {message_id, call["id"], note["id"]}

    converted = api.post(
        f"/v1/leads/{lead['id']}/convert", json={"pipeline_id": pipeline["id"], "deal_title": "Prospect: 50 seats"}
    )
    assert converted.status_code == 200, converted.text
    result = converted.json()
    assert (result["converted_now"], result["created_person"], result["created_organization"]) == (True, True, True)
    assert result["lead"]["status"] == "converted"
    assert result["lead"]["converted_at"] is not None
    assert (result["lead"]["person_id"], result["lead"]["deal_id"]) == (result["person_id"], result["deal_id"])

    person = api.get(f"/v1/persons/{result['person_id']}").json()
    assert (person["name"], person["emails"], person["phone"]) == ("Lee Prospect", [address], "+44 1")
    assert person["organization_id"] == result["organization_id"]
    assert api.get(f"/v1/organizations/{result['organization_id']}").json()["name"] == "Prospect Ltd"
    deal = api.get(f"/v1/deals/{result['deal_id']}").json()
    first_stage = pipeline["stages"][0]
    assert (deal["title"], deal["pipeline_id"], deal["stage_id"]) == (
        "Prospect: 50 seats",
        pipeline["id"],
        first_stage["id"],
    )
    assert (deal["value"], deal["currency"], deal["status"]) == ("12000.00", "GBP", "open")

    # The lead's mail, activity and note now show on the person, the organization and the deal…
    for path in (
        f"/v1/persons/{result['person_id']}",
        f"/v1/organizations/{result['organization_id']}",
        f"/v1/deals/{result['deal_id']}",
    ):
        shown = {e["id"] for e in api.get(f"{path}/timeline").json()["data"]}
        assert {message_id, call["id"], note["id"]} <= shown, path
    assert api.get(f"/v1/threads/{thread_id}").json()["deal_id"] == result["deal_id"]
    assert api.get(f"/v1/messages/{message_id}").json()["person_ids"] == [result["person_id"]]
    # …and stay on the lead, which is kept (converted), not deleted.
    after = {e["id"] for e in api.get(f"/v1/leads/{lead['id']}/timeline").json()["data"]}
    assert before <= after
    assert api.get(f"/v1/leads/{lead['id']}").json()["status"] == "converted"
    assert api.patch(f"/v1/leads/{lead['id']}", json={"name": "Changed"}).status_code == 409

    # Converting again answers the same and creates nothing.
    again = api.post(f"/v1/leads/{lead['id']}/convert", json={"pipeline_id": pipeline["id"]})
    assert again.status_code == 200
    assert again.json()["converted_now"] is False
    assert {k: again.json()[k] for k in ("person_id", "organization_id", "deal_id")} == {
        k: result[k] for k in ("person_id", "organization_id", "deal_id")
    }
    assert len(api.get("/v1/deals", params={"person_id": result["person_id"]}).json()["data"]) == 1


def test_convert_reuses_the_person_and_organization_that_exist(api: httpx.Client) -> None:
    api.post("/v1/pipelines", json={"name": "Sales"})
    domain = f"known-{uuid.uuid4().hex[:6]}.example"
    organization = api.post("/v1/organizations", json={"name": "Known Corp", "domains": [domain]}).json()
    jane = api.post("/v1/persons", json={"name": "Jane Known", "emails": [f"jane@{domain}"]}).json()
    lead = _lead(api, email=f"JANE@{domain}", company="Whatever They Typed")
    result = api.post(f"/v1/leads/{lead['id']}/convert").json()
    assert (result["person_id"], result["created_person"]) == (jane["id"], False)
    assert (result["organization_id"], result["created_organization"]) == (organization["id"], False)

    # By company name when the domain is nobody's; no organization when there is neither.
    named = _lead(api, phone="+1 555 0100", company="known corp")
    assert api.post(f"/v1/leads/{named['id']}/convert").json()["organization_id"] == organization["id"]
    solo = _lead(api, phone="+1 555 0100")
    solo_result = api.post(f"/v1/leads/{solo['id']}/convert").json()
    assert solo_result["organization_id"] is None
    assert api.get(f"/v1/deals/{solo_result['deal_id']}").json()["title"] == "Lee Prospect"


def test_convert_needs_a_pipeline_and_explains_it(api: httpx.Client) -> None:
    lead = _lead(api, phone="+1 555 0100")
    refused = api.post(f"/v1/leads/{lead['id']}/convert")
    assert refused.status_code == 422
    assert "create a pipeline first" in refused.json()["detail"]
    assert api.get(f"/v1/leads/{lead['id']}").json()["status"] == "new"
    unknown = api.post(f"/v1/leads/{lead['id']}/convert", json={"pipeline_id": str(uuid.uuid4())})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "pipeline_id"


def test_concurrent_converts_make_one_person_and_one_deal(
    api_stack: Stack, mail: MailStore, api: httpx.Client, api_sessions: sessionmaker[Session]
) -> None:
    api.post("/v1/pipelines", json={"name": "Sales"})
    address = f"race.{uuid.uuid4().hex[:6]}@racing.example"
    lead = _lead(api, email=address, company="Racing Ltd")
    barrier = threading.Barrier(8)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def convert() -> None:
        with client(api_stack, mail.tenant.token) as http:
            barrier.wait(timeout=30)
            response = http.post(f"/v1/leads/{lead['id']}/convert")
        with lock:
            answers.append(response)

    workers = [threading.Thread(target=convert) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert len(answers) == 8
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    results = {(a.json()["person_id"], a.json()["deal_id"], a.json()["organization_id"]) for a in answers}
    assert len(results) == 1
    assert sum(a.json()["converted_now"] for a in answers) == 1
    with transaction(api_sessions) as session:
        account = mail.tenant.account_id
        assert session.scalar(select(func.count()).select_from(Deal).where(Deal.account_id == account)) == 1
        assert session.scalar(select(func.count()).select_from(Person).where(Person.account_id == account)) == 1


def test_mail_to_a_leads_sub_address_lands_on_the_lead_then_on_its_deal(
    api_stack: Stack, api: httpx.Client, mail: MailStore
) -> None:
    api.post("/v1/pipelines", json={"name": "Sales"})
    address = f"lee.{uuid.uuid4().hex[:6]}@gmail-like.example"
    lead = _lead(api, email=address, owner_user_id=str(mail.tenant.user_id))
    first = make_mail(
        sender=f"Sam Seller <{mail.tenant.user_email}>",
        to=[f"Lee <{address}>"],
        subject="Following up on your enquiry",
        message_id=f"<enquiry-{uuid.uuid4().hex}@acme.example>",
    )
    send(api_stack.smtp_port, [lead["bcc_address"]], first, sender=mail.tenant.user_email)

    def on_lead() -> list[dict[str, Any]] | None:
        entries = api.get(f"/v1/leads/{lead['id']}/timeline").json()["data"]
        return [e for e in entries if e["kind"] == "message"] or None

    [entry] = wait_for(on_lead, timeout=60, what="the mail on the lead's timeline")
    assert entry["message"]["subject"] == "Following up on your enquiry"
    thread_id = entry["message"]["thread_id"]

    result = api.post(f"/v1/leads/{lead['id']}/convert").json()
    assert api.get(f"/v1/threads/{thread_id}").json()["deal_id"] == result["deal_id"]
    # Later mail to the converted lead's address goes to its deal, and still shows on the lead.
    later = make_mail(
        sender=f"Sam Seller <{mail.tenant.user_email}>",
        to=[f"Lee <{address}>"],
        subject="Contract draft",
        message_id=f"<contract-{uuid.uuid4().hex}@acme.example>",
    )
    send(api_stack.smtp_port, [lead["bcc_address"]], later, sender=mail.tenant.user_email)

    def on_deal() -> dict[str, Any] | None:
        entries = api.get(f"/v1/deals/{result['deal_id']}/timeline").json()["data"]
        found = [e for e in entries if e["kind"] == "message" and e["message"]["subject"] == "Contract draft"]
        return found[0] if found else None

    contract = wait_for(on_deal, timeout=60, what="the later mail on the deal's timeline")
    assert contract["message"]["deal_id"] == result["deal_id"]
    lead_subjects = {
        e["message"]["subject"] for e in api.get(f"/v1/leads/{lead['id']}/timeline").json()["data"] if e["message"]
    }
    assert lead_subjects == {"Following up on your enquiry", "Contract draft"}


def test_a_deleted_deal_gets_no_new_mail(api_stack: Stack, api: httpx.Client, mail: MailStore) -> None:
    customer = f"del.{uuid.uuid4().hex[:6]}@deleted-deal.example"
    person = api.post("/v1/persons", json={"name": "Del", "emails": [customer]}).json()
    deal = api.post("/v1/deals", json={"title": "Gone", "person_id": person["id"]}).json()
    assert api.delete(f"/v1/deals/{deal['id']}").status_code == 204
    local_part, domain = mail.tenant.bcc_address.split("@")
    sent = make_mail(
        sender=f"Sam Seller <{mail.tenant.user_email}>",
        to=[customer],
        subject="After the deletion",
        message_id=f"<after-{uuid.uuid4().hex}@acme.example>",
    )
    # Neither inferred from the person's deals nor routed by the deleted deal's own sub-address.
    send(api_stack.smtp_port, [f"{local_part}+deal-{deal['id']}@{domain}"], sent, sender=mail.tenant.user_email)

    def stored() -> dict[str, Any] | None:
        found = api.get("/v1/threads", params={"person_id": person["id"]}).json()["data"]
        return found[0] if found else None

    thread = wait_for(stored, timeout=60, what="the mail to be stored")
    assert thread["deal_id"] is None
