"""Drafts over HTTP: a teammate writes a reply, only the thread's owner (or an admin) lets it go out.

Sending through a real SMTP relay is in tests/api/test_drafts_sending.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import MailStore, client
from tests.support.stack import Stack


@pytest.fixture
def teammate(api: httpx.Client, api_stack: Stack) -> Iterator[httpx.Client]:
    """A colleague's write token: can prepare replies, cannot approve them."""
    user = api.post("/v1/users", json={"email": f"tm.{uuid.uuid4().hex[:6]}@acme.example", "name": "Teammate"}).json()
    token = api.post("/v1/tokens", json={"scope": "write", "user_id": user["id"]}).json()["token"]
    with client(api_stack, token) as http:
        yield http


@pytest.fixture
def owner(api: httpx.Client, api_stack: Stack, mail: MailStore) -> Iterator[httpx.Client]:
    """The thread owner's own write token."""
    token = api.post("/v1/tokens", json={"scope": "write", "user_id": str(mail.tenant.user_id)}).json()["token"]
    with client(api_stack, token) as http:
        yield http


def test_a_teammates_reply_waits_for_the_owner_who_approves_it(
    api: httpx.Client, teammate: httpx.Client, owner: httpx.Client, mail: MailStore
) -> None:
    thread = mail.thread("Pricing question")
    mail.message(thread, subject="Pricing question", sender=("Jane Doe", "jane@customer.example"))
    last_id = mail.message(thread, subject="Re: Pricing question", sender=("Jane Doe", "jane@customer.example"))
    last = api.get(f"/v1/messages/{last_id}").json()

    created = teammate.post("/v1/drafts", json={"thread_id": thread, "body": "Hi Jane, 10 seats are 900 EUR."})
    assert created.status_code == 201, created.text
    draft = created.json()
    assert draft["status"] == "draft"
    assert draft["user_id"] == str(mail.tenant.user_id)  # sent as the thread's owner, who decides
    assert draft["to"] == ["jane@customer.example"]  # answers whoever wrote last
    assert draft["subject"] == "Re: Pricing question"
    assert draft["in_reply_to"] == last["message_id"]
    assert draft["references"][-1] == last["message_id"]
    assert draft["message_id"].endswith("@acme.example")

    edited = teammate.patch(f"/v1/drafts/{draft['id']}", json={"body": "Hi Jane, 10 seats are 850 EUR."})
    assert edited.json()["body"] == "Hi Jane, 10 seats are 850 EUR."

    submitted = teammate.post(f"/v1/drafts/{draft['id']}/submit")
    assert submitted.json()["status"] == "pending_approval"  # the account asks before sending, by default
    assert teammate.patch(f"/v1/drafts/{draft['id']}", json={"body": "sneaky"}).status_code == 409

    refused = teammate.post(f"/v1/drafts/{draft['id']}/approve")
    assert refused.status_code == 403
    assert refused.json()["type"] == "https://mailroom.dev/problems/not-the-owner"

    queue = owner.get("/v1/drafts", params={"status": "pending_approval", "user_id": str(mail.tenant.user_id)})
    assert [d["id"] for d in queue.json()["data"]] == [draft["id"]]

    approved = owner.post(f"/v1/drafts/{draft['id']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["decided_by_user_id"] == str(mail.tenant.user_id)
    assert owner.post(f"/v1/drafts/{draft['id']}/approve").status_code == 409  # decided once
    assert owner.delete(f"/v1/drafts/{draft['id']}").status_code == 409  # kept as a record


def test_a_rejected_draft_can_be_edited_and_submitted_again(
    api: httpx.Client, teammate: httpx.Client, owner: httpx.Client, mail: MailStore
) -> None:
    thread = mail.thread("Contract")
    mail.message(thread, subject="Contract")
    draft = teammate.post("/v1/drafts", json={"thread_id": thread, "body": "Signed?"}).json()
    teammate.post(f"/v1/drafts/{draft['id']}/submit")

    rejected = owner.post(f"/v1/drafts/{draft['id']}/reject", json={"reason": "Too curt; say thanks first."})
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["rejection_reason"] == "Too curt; say thanks first."
    assert owner.post(f"/v1/drafts/{draft['id']}/approve").status_code == 409

    again = teammate.patch(f"/v1/drafts/{draft['id']}", json={"body": "Thanks for the call! Signed?"})
    assert again.json()["status"] == "draft"
    assert again.json()["rejection_reason"] is None
    assert teammate.post(f"/v1/drafts/{draft['id']}/submit").json()["status"] == "pending_approval"
    # An admin (account-wide) token decides too.
    assert api.post(f"/v1/drafts/{draft['id']}/reject").json()["status"] == "rejected"


def test_without_ask_before_sending_a_submitted_draft_is_queued_at_once(
    api: httpx.Client, teammate: httpx.Client, mail: MailStore
) -> None:
    assert api.get("/v1/account").json()["settings"]["ask_before_sending"] is True
    changed = api.patch("/v1/account", json={"ask_before_sending": False})
    assert changed.json()["settings"]["ask_before_sending"] is False
    thread = mail.thread("Demo")
    mail.message(thread, subject="Demo")
    draft = teammate.post("/v1/drafts", json={"thread_id": thread, "body": "Tuesday works."}).json()
    submitted = teammate.post(f"/v1/drafts/{draft['id']}/submit").json()
    assert submitted["status"] == "approved"
    assert submitted["next_attempt_at"] is not None


def test_the_owner_submitting_their_own_draft_sends_it(owner: httpx.Client, mail: MailStore) -> None:
    thread = mail.thread("Follow-up")
    mail.message(thread, subject="Follow-up")
    draft = owner.post("/v1/drafts", json={"thread_id": thread, "body": "Any news?"}).json()
    assert owner.post(f"/v1/drafts/{draft['id']}/submit").json()["status"] == "approved"


def test_drafts_are_private_to_their_author_and_owner(
    api: httpx.Client, api_stack: Stack, teammate: httpx.Client, mail: MailStore
) -> None:
    thread = mail.thread("Private")
    mail.message(thread, subject="Private")
    draft = teammate.post("/v1/drafts", json={"thread_id": thread, "body": "Between us"}).json()
    bystander = api.post("/v1/users", json={"email": f"by.{uuid.uuid4().hex[:6]}@acme.example"}).json()
    token = api.post("/v1/tokens", json={"scope": "write", "user_id": bystander["id"]}).json()["token"]
    with client(api_stack, token) as other:
        assert other.get(f"/v1/drafts/{draft['id']}").status_code == 404
        assert other.get("/v1/drafts").json()["data"] == []
    assert api.get(f"/v1/drafts/{draft['id']}").status_code == 200


def test_bad_drafts_are_explained(api: httpx.Client, mail: MailStore) -> None:
    empty = mail.thread("No mail yet")
    no_owner = api.post("/v1/drafts", json={"thread_id": empty, "body": "Hello"})
    assert no_owner.status_code == 422
    assert no_owner.json()["errors"][0]["field"] == "user_id"
    no_thread = api.post("/v1/drafts", json={"thread_id": str(uuid.uuid4()), "body": "Hello"})
    assert no_thread.status_code == 422
    assert no_thread.json()["errors"][0]["field"] == "thread_id"
    bad_address = api.post("/v1/drafts", json={"thread_id": empty, "body": "x", "to": ["not an address"]})
    assert bad_address.status_code == 422
    started = api.post(
        "/v1/drafts",
        json={"thread_id": empty, "body": "Hello", "to": ["new@customer.example"], "user_id": str(mail.tenant.user_id)},
    )
    assert started.status_code == 201, started.text
    assert started.json()["in_reply_to"] is None
    assert started.json()["subject"] == "Re: No mail yet"
