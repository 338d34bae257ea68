"""A Smart-BCC message travels SMTP → Postgres → Redis → matcher → API, on the production topology."""

from __future__ import annotations

import re
import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.models import InboundMessage
from tests.conftest import Tenant
from tests.support.stack import Stack, make_mail, send, wait_for, wire_bytes

PDF_BYTES = b"%PDF-1.4\n\x00\xff\xfe binary \r\n content\x00"


def wait_for_messages(api: httpx.Client, count: int, **params: str) -> list[dict[str, object]]:
    def listed() -> list[dict[str, object]] | None:
        data: list[dict[str, object]] = api.get("/v1/messages", params=params).json()["data"]
        return data if len(data) >= count else None

    return wait_for(listed, what=f"{count} message(s) in the API")


def test_sent_mail_with_attachment_reaches_the_api(stack: Stack, tenant: Tenant, api: httpx.Client) -> None:
    jane = api.post("/v1/persons", json={"name": "Jane Doe", "emails": ["Jane@Customer.example"]}).json()
    deal = api.post(
        "/v1/deals",
        json={"title": "Rollout", "person_id": jane["id"], "status": "open", "value": "1200.50", "currency": "EUR"},
    ).json()
    mail = make_mail(
        sender=f"Sam Seller <{tenant.user_email}>",
        to=['"Doe, Jane" <jane@customer.example>'],
        cc=["bob.builder@other.example"],
        subject="Proposal for the rollout",
        body="Hi Jane,\n\nthe proposal is attached.\n",
        message_id="<proposal-1@acme.example>",
        attachments=[("proposal.pdf", "application/pdf", PDF_BYTES)],
    )

    reply = send(stack.smtp_port, [tenant.bcc_address], mail, sender=tenant.user_email)

    assert re.fullmatch(r"2\.0\.0 queued as [0-9a-f-]{36}", reply)
    [message] = wait_for_messages(api, 1)
    assert message["subject"] == "Proposal for the rollout"
    assert message["message_id"] == "proposal-1@acme.example"
    assert message["from"] == {"name": "Sam Seller", "address": tenant.user_email}
    assert message["to"] == [{"name": "Doe, Jane", "address": "jane@customer.example"}]
    assert message["cc"] == [{"name": None, "address": "bob.builder@other.example"}]
    assert message["direction"] == "outbound"
    assert message["sent_at"] == "2026-11-24T10:00:00Z"
    assert "the proposal is attached." in str(message["text_body"])
    assert message["deal_id"] == deal["id"]

    [attachment] = message["attachments"]  # type: ignore[misc]
    assert attachment["filename"] == "proposal.pdf"
    assert attachment["size"] == len(PDF_BYTES)
    download = api.get(f"/v1/attachments/{attachment['id']}/content")
    assert download.status_code == 200
    assert download.content == PDF_BYTES
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"].startswith("attachment;")

    persons = {p["emails"][0]: p for p in api.get("/v1/persons").json()["data"]}
    bob = persons["bob.builder@other.example"]
    assert bob["name"] == "Bob Builder"
    assert bob["created_from"] == "email"
    assert bob["created_by_message_id"] == message["id"]
    assert persons["jane@customer.example"]["created_from"] == "api"
    assert set(message["person_ids"]) == {jane["id"], bob["id"]}  # type: ignore[arg-type]

    thread = api.get(f"/v1/threads/{message['thread_id']}").json()
    assert [m["id"] for m in thread["messages"]] == [message["id"]]
    assert thread["deal_id"] == deal["id"]


def test_a_reply_joins_the_thread_of_the_message_it_answers(stack: Stack, tenant: Tenant, api: httpx.Client) -> None:
    first = make_mail(
        sender=tenant.user_email, to=["lee@client.example"], subject="Quote", message_id="<q1@acme.example>"
    )
    reply = make_mail(
        sender="Lee <lee@client.example>",
        to=[tenant.user_email],
        subject="Re: Quote",
        message_id="<q2@client.example>",
        in_reply_to="<q1@acme.example>",
        references=["<q1@acme.example>"],
    )
    send(stack.smtp_port, [tenant.bcc_address], reply)
    send(stack.smtp_port, [tenant.bcc_address], first)

    messages = wait_for_messages(api, 2)
    assert len({m["thread_id"] for m in messages}) == 1
    inbound = next(m for m in messages if m["message_id"] == "q2@client.example")
    assert inbound["direction"] == "inbound"


def test_the_same_message_delivered_twice_is_stored_once(
    stack: Stack, tenant: Tenant, api: httpx.Client, sessions: sessionmaker[Session]
) -> None:
    mail = make_mail(sender=tenant.user_email, to=["dup@client.example"], subject="Twice", message_id="<d1@acme>")
    first = send(stack.smtp_port, [tenant.bcc_address], mail)
    second = send(stack.smtp_port, [tenant.bcc_address], mail)
    assert first != second  # two deliveries, two receipts

    def both_processed() -> list[InboundMessage] | None:
        with sessions() as session:
            rows = list(
                session.scalars(select(InboundMessage).where(InboundMessage.account_id == tenant.account_id)).all()
            )
        return rows if len(rows) == 2 and all(r.status == "processed" for r in rows) else None

    rows = wait_for(both_processed, what="both deliveries processed")
    assert rows[0].message_id == rows[1].message_id is not None
    assert len(api.get("/v1/messages").json()["data"]) == 1
    assert len(api.get("/v1/persons").json()["data"]) == 1


def test_queued_id_names_the_stored_raw_message(stack: Stack, tenant: Tenant, sessions: sessionmaker[Session]) -> None:
    mail = make_mail(sender=tenant.user_email, to=["raw@client.example"], subject="Raw bytes")
    reply = send(stack.smtp_port, [tenant.bcc_address], mail, sender="bounce@acme.example")
    inbound_id = uuid.UUID(reply.rsplit(" ", 1)[1])
    with sessions() as session:
        inbound = session.get_one(InboundMessage, inbound_id)
        assert inbound.account_id == tenant.account_id
        assert inbound.envelope_from == "bounce@acme.example"
        assert inbound.envelope_to == tenant.bcc_address
        assert inbound.raw == wire_bytes(mail)


def test_attachments_are_listed_in_the_order_they_were_attached(
    stack: Stack, tenant: Tenant, api: httpx.Client
) -> None:
    files = [("zebra.txt", b"z"), ("apple.txt", b"a"), ("mango.txt", b"m")]
    mail = make_mail(
        sender=tenant.user_email,
        to=["files@client.example"],
        subject="Three files",
        attachments=[(name, "text/plain", content) for name, content in files],
    )
    send(stack.smtp_port, [tenant.bcc_address], mail)
    [message] = wait_for_messages(api, 1)
    assert [a["filename"] for a in message["attachments"]] == ["zebra.txt", "apple.txt", "mango.txt"]  # type: ignore[union-attr]


def test_mail_from_an_unverified_alias_is_held_until_verified_then_reprocessed(
    stack: Stack, tenant: Tenant, api: httpx.Client
) -> None:
    alias = api.post(f"/v1/users/{tenant.user_id}/aliases", json={"address": "sam@acme-holding.example"}).json()
    mail = make_mail(
        sender="Sam <sam@acme-holding.example>", to=["lee@client.example"], subject="From my other address"
    )
    inbound_id = send(stack.smtp_port, [tenant.bcc_address], mail).rsplit(" ", 1)[1]

    def held() -> list[dict[str, object]]:
        return [h for h in api.get("/v1/held-messages").json()["data"] if h["id"] == inbound_id]

    [entry] = wait_for(held, what="the message to be held")
    assert "sam@acme-holding.example" in str(entry["hold_reason"])
    assert api.get("/v1/messages").json()["data"] == []

    assert api.post(f"/v1/users/{tenant.user_id}/aliases/{alias['id']}/verify").status_code == 200
    assert api.post(f"/v1/held-messages/{inbound_id}/reprocess").status_code in (200, 202)
    [message] = wait_for_messages(api, 1)
    assert (message["kind"], message["direction"], message["subject"]) == ("sent", "outbound", "From my other address")


def test_a_contact_reply_that_overtakes_the_users_message_is_released_automatically(
    stack: Stack, tenant: Tenant, api: httpx.Client
) -> None:
    reply = make_mail(
        sender="Lee <lee@client.example>",
        to=[tenant.user_email],
        cc=[tenant.bcc_address],
        subject="Re: Offer",
        message_id="<overtake-2@client>",
        in_reply_to="<overtake-1@acme>",
        references=["<overtake-1@acme>"],
    )
    send(stack.smtp_port, [tenant.bcc_address], reply)
    wait_for(lambda: api.get("/v1/held-messages").json()["data"], what="the early reply to be held")

    original = make_mail(
        sender=tenant.user_email, to=["lee@client.example"], subject="Offer", message_id="<overtake-1@acme>"
    )
    send(stack.smtp_port, [tenant.bcc_address], original)
    messages = wait_for_messages(api, 2)  # the worker re-enqueues the reply the moment it has a place
    assert {m["kind"] for m in messages} == {"sent", "contact"}
    assert len({m["thread_id"] for m in messages}) == 1
    assert api.get("/v1/held-messages").json()["data"] == []
