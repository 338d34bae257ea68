"""Approved drafts go out through a real SMTP relay (an aiosmtpd server this test runs) and come back into their
thread like the user's own BCC copy: once, even when the user also BCC'd it to their Smart-BCC address."""

from __future__ import annotations

import email
import email.policy
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from shared.models import InboundMessage, Message
from tests.conftest import Infra, Tenant, new_tenant, stack_env
from tests.support.servers import free_port
from tests.support.stack import Stack, make_mail, send, wait_for
from tests.support.webhooks import Receiver, subscribe

pytestmark = pytest.mark.xdist_group("drafts-sending")

REFUSED = "nobody@customer.example"


@dataclass
class Relayed:
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed: EmailMessage = email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[assignment]
        return parsed


@dataclass
class Relay:
    """A relay that keeps what it accepts, refuses one mailbox for good, and can be told to fail for a while."""

    port: int = field(default_factory=free_port)
    received: list[Relayed] = field(default_factory=list)
    temporary_failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 -- aiosmtpd's hook name
        self, server: Any, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address == REFUSED:
            return "550 5.1.1 <nobody@customer.example>: no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        with self.lock:
            if self.temporary_failures > 0:
                self.temporary_failures -= 1
                return "451 4.3.0 mailbox busy, try again later"
            self.received.append(Relayed(list(envelope.rcpt_tos), envelope.original_content or b""))
        return "250 2.0.0 relayed"

    def delivered(self, message_id: str) -> list[Relayed]:
        with self.lock:
            return [r for r in self.received if f"<{message_id}>" in r.message.get("Message-ID", "")]


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    running = Relay()
    controller = Controller(running, hostname="127.0.0.1", port=running.port)
    controller.start()
    yield running
    controller.stop()


@pytest.fixture(scope="module")
def sending_stack(infra: Infra, relay: Relay, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("drafts-sending")
    env = stack_env(
        infra,
        data_dir,
        smtp_relay_url=f"smtp://127.0.0.1:{relay.port}",
        draft_send_backoff_seconds="0.3",
        draft_send_max_attempts="4",
        draft_send_lease_seconds="20",
        webhook_allow_private_targets="true",  # the test's receiver listens on 127.0.0.1
    )
    running = Stack(env=env, log_dir=data_dir)
    running.start("gateway", "worker", "api")
    yield running
    running.stop()


@dataclass
class Office:
    tenant: Tenant
    admin: httpx.Client
    owner: httpx.Client
    teammate: httpx.Client


@pytest.fixture
def office(sending_stack: Stack, sessions: sessionmaker[DbSession]) -> Iterator[Office]:
    tenant = new_tenant(sessions)

    def http(token: str) -> httpx.Client:
        return httpx.Client(base_url=sending_stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    with http(tenant.token) as admin:
        teammate = admin.post("/v1/users", json={"email": f"tm.{uuid.uuid4().hex[:6]}@acme.example"}).json()
        owner_token = admin.post("/v1/tokens", json={"scope": "write", "user_id": str(tenant.user_id)}).json()
        teammate_token = admin.post("/v1/tokens", json={"scope": "write", "user_id": teammate["id"]}).json()
        with http(owner_token["token"]) as owner, http(teammate_token["token"]) as mate:
            yield Office(tenant, admin, owner, mate)


def _thread_started_by_the_user(stack: Stack, office: Office) -> tuple[str, str]:
    """The user writes to Jane and BCCs Mailroom: a thread whose last message is the user's."""
    message_id = f"<first.{uuid.uuid4().hex}@acme.example>"
    mail = make_mail(
        sender=f"Sam Seller <{office.tenant.user_email}>",
        to=["Jane Doe <jane@customer.example>"],
        subject="Proposal",
        message_id=message_id,
        references=["<intro.1@customer.example>"],
    )
    send(stack.smtp_port, [office.tenant.bcc_address], mail, sender=office.tenant.user_email)

    def placed() -> dict[str, Any] | None:
        found = office.admin.get("/v1/messages").json()["data"]
        return found[0] if found else None

    stored = wait_for(placed, what="the user's first message to be threaded")
    return stored["thread_id"], message_id.strip("<>")


def _approved(office: Office, thread_id: str, **fields: Any) -> dict[str, Any]:
    draft = office.teammate.post("/v1/drafts", json={"thread_id": thread_id, "body": "Hi Jane, any news?", **fields})
    assert draft.status_code == 201, draft.text
    assert office.teammate.post(f"/v1/drafts/{draft.json()['id']}/submit").json()["status"] == "pending_approval"
    approved = office.owner.post(f"/v1/drafts/{draft.json()['id']}/approve")
    assert approved.json()["status"] == "approved", approved.text
    body: dict[str, Any] = approved.json()
    return body


def _settled(office: Office, draft_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        draft: dict[str, Any] = office.admin.get(f"/v1/drafts/{draft_id}").json()
        return draft if draft["status"] in ("sent", "failed") else None

    return wait_for(done, timeout=30, what="the draft to be sent or to fail")


def _copies_in_thread(sessions: sessionmaker[DbSession], tenant: Tenant, message_id: str) -> int:
    with sessions() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.account_id == tenant.account_id, Message.message_id_header == message_id)
            )
            or 0
        )


def _all_processed(sessions: sessionmaker[DbSession], tenant: Tenant, expected: int) -> bool:
    with sessions() as session:
        statuses = session.scalars(select(InboundMessage.status).where(InboundMessage.account_id == tenant.account_id))
        done = [s for s in statuses if s != "received"]
    return len(done) == expected


def test_an_approved_draft_is_sent_as_a_reply_and_its_copy_joins_the_thread(
    sending_stack: Stack, relay: Relay, office: Office, sessions: sessionmaker[DbSession]
) -> None:
    thread_id, first_id = _thread_started_by_the_user(sending_stack, office)
    draft = _approved(office, thread_id, cc=["boss@customer.example"])
    assert draft["to"] == ["jane@customer.example"]  # the user wrote last: the reply goes to the same people

    sent = _settled(office, draft["id"])
    assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 1, None)
    [relayed] = relay.delivered(draft["message_id"])
    assert sorted(relayed.rcpt_tos) == ["boss@customer.example", "jane@customer.example"]
    headers = relayed.message
    assert headers["In-Reply-To"] == f"<{first_id}>"
    assert headers["References"] == f"<intro.1@customer.example> <{first_id}>"
    assert headers["Subject"] == "Re: Proposal"
    assert office.tenant.user_email in headers["From"]

    def in_thread() -> list[dict[str, Any]] | None:
        messages = office.admin.get(f"/v1/threads/{thread_id}").json().get("messages", [])
        return messages if len(messages) == 2 else None

    messages = wait_for(in_thread, what="the sent copy to join the thread")
    reply = next(m for m in messages if m["message_id"] == draft["message_id"])
    assert reply["kind"] == "sent"
    assert _copies_in_thread(sessions, office.tenant, draft["message_id"]) == 1


def test_a_draft_the_user_also_bccs_appears_once(
    sending_stack: Stack, relay: Relay, office: Office, sessions: sessionmaker[DbSession]
) -> None:
    thread_id, _ = _thread_started_by_the_user(sending_stack, office)
    draft = _approved(office, thread_id, bcc=[office.tenant.bcc_address])
    assert _settled(office, draft["id"])["status"] == "sent"
    [relayed] = relay.delivered(draft["message_id"])
    assert office.tenant.bcc_address in relayed.rcpt_tos
    assert "Bcc" not in relayed.message  # blind copies stay blind
    # What the relay would deliver to the Smart-BCC address arrives at the gateway as well.
    send(sending_stack.smtp_port, [office.tenant.bcc_address], relayed.raw, sender=office.tenant.user_email)

    # The first message, the outbox copy and the BCC copy: all three processed, one stored message for the reply.
    wait_for(lambda: _all_processed(sessions, office.tenant, 3), what="both copies to be processed")
    assert _copies_in_thread(sessions, office.tenant, draft["message_id"]) == 1
    thread = office.admin.get(f"/v1/threads/{thread_id}").json()
    assert [m["message_id"] for m in thread["messages"]].count(draft["message_id"]) == 1


def test_a_busy_relay_is_retried_with_the_reason_kept(sending_stack: Stack, relay: Relay, office: Office) -> None:
    thread_id, _ = _thread_started_by_the_user(sending_stack, office)
    with relay.lock:
        relay.temporary_failures = 2
    draft = _approved(office, thread_id)
    sent = _settled(office, draft["id"])
    assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 3, None)
    errors = [attempt["error"] for attempt in sent["attempt_log"]]
    assert errors[2] is None
    assert all("451" in (error or "") and "try again later" in (error or "") for error in errors[:2])
    assert len(relay.delivered(draft["message_id"])) == 1


def test_a_refused_recipient_fails_the_draft_for_good_and_keeps_it(
    sending_stack: Stack, relay: Relay, office: Office
) -> None:
    thread_id, _ = _thread_started_by_the_user(sending_stack, office)
    draft = _approved(office, thread_id, to=[REFUSED])
    failed = _settled(office, draft["id"])
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1  # a 5xx is the relay's final word: no retries
    assert "550" in failed["last_error"]
    assert REFUSED in failed["last_error"]
    assert failed["body"] == "Hi Jane, any news?"  # the draft is kept, with what it said
    assert relay.delivered(draft["message_id"]) == []

    # Fixed and retried by the owner: a fresh round of attempts.
    assert office.teammate.post(f"/v1/drafts/{draft['id']}/retry").status_code == 403
    retried = office.owner.post(f"/v1/drafts/{draft['id']}/retry").json()
    assert (retried["status"], retried["attempts"]) == ("approved", 0)
    assert _settled(office, draft["id"])["status"] == "failed"


DRAFT_EVENTS = ["draft.pending_approval", "draft.approved", "draft.rejected", "draft.sent", "draft.failed"]


def test_each_status_a_draft_reaches_is_told_to_webhooks(
    sending_stack: Stack, relay: Relay, office: Office, receiver: Receiver
) -> None:
    """The owner's tool learns that a reply waits for them; the author's learns the decision and the outcome."""
    subscribe(office.admin, receiver, DRAFT_EVENTS)
    thread_id, _ = _thread_started_by_the_user(sending_stack, office)
    draft = office.teammate.post("/v1/drafts", json={"thread_id": thread_id, "body": "Signed?"}).json()
    office.teammate.post(f"/v1/drafts/{draft['id']}/submit")
    office.owner.post(f"/v1/drafts/{draft['id']}/reject", json={"reason": "Say thanks first."})
    office.teammate.patch(f"/v1/drafts/{draft['id']}", json={"body": "Thanks for the call! Signed?"})
    office.teammate.post(f"/v1/drafts/{draft['id']}/submit")
    office.owner.post(f"/v1/drafts/{draft['id']}/approve")
    assert _settled(office, draft["id"])["status"] == "sent"

    wait_for(lambda: len(receiver.received) == 5, what="five draft events at the receiver")
    # Deliveries run side by side, so they may arrive in any order; `created_at` orders the events.
    events = sorted(receiver.received, key=lambda event: str(event["created_at"]))
    assert [event["type"] for event in events] == [
        "draft.pending_approval",
        "draft.rejected",
        "draft.pending_approval",
        "draft.approved",
        "draft.sent",
    ]
    teammate_id = office.admin.get("/v1/drafts/" + draft["id"]).json()["author_user_id"]
    owner_id = str(office.tenant.user_id)
    common = {"draft_id": draft["id"], "thread_id": thread_id, "user_id": owner_id, "author_user_id": teammate_id}
    pending, rejected, _, approved, sent = (event["data"] for event in events)
    assert pending == {**common, "status": "pending_approval", "decided_by_user_id": None, "reason": None}
    assert rejected == {**common, "status": "rejected", "decided_by_user_id": owner_id, "reason": "Say thanks first."}
    assert approved == {**common, "status": "approved", "decided_by_user_id": owner_id, "reason": None}
    assert sent == {**common, "status": "sent", "decided_by_user_id": owner_id, "reason": None}
    assert receiver.rejected == 0


def test_a_draft_that_fails_for_good_is_told_to_webhooks_with_the_relays_answer(
    sending_stack: Stack, relay: Relay, office: Office, receiver: Receiver
) -> None:
    subscribe(office.admin, receiver, ["draft.failed", "draft.sent"])
    thread_id, _ = _thread_started_by_the_user(sending_stack, office)
    draft = _approved(office, thread_id, to=[REFUSED])
    assert _settled(office, draft["id"])["status"] == "failed"

    [failed] = wait_for(lambda: receiver.events("draft.failed"), what="draft.failed at the receiver")
    assert failed["data"]["draft_id"] == draft["id"]
    assert failed["data"]["status"] == "failed"
    assert "550" in failed["data"]["reason"]
    assert REFUSED in failed["data"]["reason"]
    assert receiver.types() == ["draft.failed"]  # only what the subscription asked for
