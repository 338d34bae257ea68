"""Held and failed mail: listed with reasons, reprocessed through the real worker, or discarded (kept)."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.orm import Session, sessionmaker

from shared.db import transaction
from shared.models import InboundMessage
from tests.api.conftest import MailStore
from tests.support.stack import make_mail, wait_for, wire_bytes


def _sent_mail(mail: MailStore, subject: str) -> bytes:
    return wire_bytes(
        make_mail(
            sender=mail.tenant.user_email,
            to=["lee@client.example"],
            subject=subject,
            message_id=f"<{uuid.uuid4().hex}@acme.example>",
        )
    )


def test_held_mail_is_listed_with_its_reason_and_can_be_reprocessed(api: httpx.Client, mail: MailStore) -> None:
    held = mail.held(_sent_mail(mail, "Held for an alias"), reason="sender alias not verified")
    [item] = api.get("/v1/held-messages").json()["data"]
    assert item["id"] == held
    assert (item["status"], item["hold_reason"]) == ("held", "sender alias not verified")
    assert item["subject"] == "Held for an alias"
    assert item["from"] == mail.tenant.user_email
    assert api.get(f"/v1/held-messages/{held}").json() == item

    assert api.post(f"/v1/held-messages/{held}/reprocess").status_code == 202

    def processed() -> bool:
        return api.get(f"/v1/held-messages/{held}").json()["status"] not in ("held", "received")

    wait_for(processed, what="the worker to process the reprocessed message")
    assert api.get(f"/v1/held-messages/{held}").json()["status"] == "processed"
    assert api.get("/v1/held-messages").json()["data"] == []
    threads = api.get("/v1/threads", params={"q": "Held for an alias"}).json()["data"]
    assert len(threads) == 1
    assert api.post(f"/v1/held-messages/{held}/reprocess").status_code == 409


def test_reprocess_all_and_discard(api: httpx.Client, mail: MailStore, api_sessions: sessionmaker[Session]) -> None:
    alias = mail.held(_sent_mail(mail, "One"), reason="sender alias not verified")
    other = mail.held(_sent_mail(mail, "Two"), reason="too many new people")
    spam = mail.held(b"From: x@spam.example\r\nSubject: Win\r\n\r\n!\r\n", reason="stranger")
    failed = mail.held(_sent_mail(mail, "Three"), reason="")
    with transaction(api_sessions) as session:
        row = session.get_one(InboundMessage, uuid.UUID(failed))
        row.status, row.hold_reason, row.last_error = "failed", None, "ValueError: boom"

    assert [i["id"] for i in api.get("/v1/held-messages", params={"status": "failed"}).json()["data"]] == [failed]
    assert (
        api.get("/v1/held-messages", params={"status": "failed"}).json()["data"][0]["last_error"] == "ValueError: boom"
    )
    assert api.post(f"/v1/held-messages/{spam}/discard").status_code == 204
    assert api.get(f"/v1/held-messages/{spam}").json()["status"] == "discarded"
    assert api.post(f"/v1/held-messages/{spam}/reprocess").status_code == 409
    assert spam not in {i["id"] for i in api.get("/v1/held-messages").json()["data"]}

    count = api.post("/v1/held-messages/reprocess", json={"reason_contains": "alias"}).json()["count"]
    assert count == 1
    wait_for(lambda: api.get(f"/v1/held-messages/{alias}").json()["status"] == "processed", what="alias mail")
    assert api.get(f"/v1/held-messages/{other}").json()["status"] == "held"
    assert api.post("/v1/held-messages/reprocess", json={}).json()["count"] == 2  # the other held one and the failed
    assert api.post("/v1/held-messages/reprocess", json={"status": "spam"}).status_code == 422
    wait_for(
        lambda: all(api.get(f"/v1/held-messages/{i}").json()["status"] != "received" for i in (other, failed)),
        what="both processed again",
    )
    assert api.get(f"/v1/held-messages/{spam}").json()["status"] == "discarded"
