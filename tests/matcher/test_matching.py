"""What the matcher decides about real-looking mail: class, people, organizations, deals — and what it holds."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.pipeline import Matcher, Outcome
from shared.blobstore import LocalBlobStore
from shared.db import transaction
from shared.models import (
    Account,
    Deal,
    Disambiguation,
    InboundMessage,
    Message,
    MessagePerson,
    Organization,
    OrganizationDomain,
    Person,
    PersonEmail,
    Thread,
    UserAlias,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from tests.conftest import Tenant
from tests.matcher.conftest import receive
from tests.support.stack import make_mail

Sessions = sessionmaker[Session]


@pytest.fixture
def deliver(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant
) -> Callable[..., tuple[uuid.UUID, Outcome]]:
    def run(mail: EmailMessage | bytes, envelope_to: str | None = None) -> tuple[uuid.UUID, Outcome]:
        inbound_id = receive(quiet_sessions, quiet_tenant, mail)
        if envelope_to is not None:
            with transaction(quiet_sessions) as session:
                session.get_one(InboundMessage, inbound_id).envelope_to = envelope_to
        return inbound_id, matcher.process(inbound_id)

    return run


def persons(sessions: Sessions, tenant: Tenant) -> dict[str, Person]:
    with sessions() as session:
        rows = session.execute(
            select(PersonEmail.address, Person)
            .join(Person, Person.id == PersonEmail.person_id)
            .where(Person.account_id == tenant.account_id)
        ).all()
    return {row[0]: row[1] for row in rows}


def stored(sessions: Sessions, tenant: Tenant, message_id: str) -> Message:
    with sessions() as session:
        return session.scalars(
            select(Message).where(Message.account_id == tenant.account_id, Message.message_id_header == message_id)
        ).one()


def inbound(sessions: Sessions, inbound_id: uuid.UUID) -> InboundMessage:
    with sessions() as session:
        return session.get_one(InboundMessage, inbound_id)


def set_account(sessions: Sessions, tenant: Tenant, **settings: object) -> None:
    with transaction(sessions) as session:
        session.get_one(Account, tenant.account_id).settings = dict(settings)


def new_person(sessions: Sessions, tenant: Tenant, name: str, address: str) -> uuid.UUID:
    with transaction(sessions) as session:
        person = Person(account_id=tenant.account_id, name=name, created_from="api")
        session.add(person)
        session.flush()
        session.add(PersonEmail(account_id=tenant.account_id, person_id=person.id, address=address))
        return person.id


def new_deal(sessions: Sessions, tenant: Tenant, person_id: uuid.UUID, title: str, status: str = "open") -> uuid.UUID:
    with transaction(sessions) as session:
        deal = Deal(account_id=tenant.account_id, title=title, person_id=person_id, status=status)
        session.add(deal)
        session.flush()
        return deal.id


# --- what arrived -------------------------------------------------------------------------------------------


def test_a_sent_copy_creates_its_external_recipients_but_not_colleagues(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    colleague = "pat." + quiet_tenant.user_email.split(".", 1)[1]  # same work domain as the user
    mail = make_mail(
        sender=f"Sam <{quiet_tenant.user_email}>",
        to=['"Doe, Jane" <Jane.Doe@Customer.example>', "noreply@customer.example"],
        cc=[colleague, "=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@supplier.example>", "ann.lee+crm@client.example"],
        subject="Offer",
        message_id="<offer-1@acme>",
    )
    _, outcome = deliver(mail)
    assert outcome is Outcome.stored
    message = stored(quiet_sessions, quiet_tenant, "offer-1@acme")
    assert (message.kind, message.direction) == ("sent", "outbound")
    people = persons(quiet_sessions, quiet_tenant)
    assert set(people) == {"jane.doe@customer.example", "jm@supplier.example", "ann.lee@client.example"}
    assert people["jane.doe@customer.example"].name == "Jane Doe"
    assert people["jm@supplier.example"].name == "Jürgen Müller"
    assert people["ann.lee@client.example"].name == "Ann Lee"
    assert people["jm@supplier.example"].created_by_rule == "recipient-of-sent-mail"
    assert people["jm@supplier.example"].created_by_message_id == message.id


def test_mail_from_an_unverified_alias_is_held_until_the_alias_is_verified(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]],
    matcher: Matcher,
    quiet_sessions: Sessions,
    quiet_tenant: Tenant,
) -> None:
    alias = "sam.private@acme-holding.example"
    with transaction(quiet_sessions) as session:
        session.add(UserAlias(account_id=quiet_tenant.account_id, user_id=quiet_tenant.user_id, address=alias))
    mail = make_mail(sender=alias, to=["kim@client.example"], subject="From my other address", message_id="<al@x>")
    inbound_id, outcome = deliver(mail)
    assert outcome is Outcome.held
    held = inbound(quiet_sessions, inbound_id)
    assert held.status == "held"
    assert held.hold_reason is not None
    assert alias in held.hold_reason
    assert "not a verified address" in held.hold_reason
    assert persons(quiet_sessions, quiet_tenant) == {}

    with transaction(quiet_sessions) as session:
        session.execute(update(UserAlias).where(UserAlias.address == alias).values(verified_at=datetime.now(UTC)))
        session.get_one(InboundMessage, inbound_id).status = "received"  # what "reprocess" does
    assert matcher.process(inbound_id) is Outcome.stored
    assert stored(quiet_sessions, quiet_tenant, "al@x").kind == "sent"
    assert set(persons(quiet_sessions, quiet_tenant)) == {"kim@client.example"}


def test_a_stranger_writing_to_the_address_is_held_and_creates_nobody(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    mail = make_mail(sender="spammer@bad.example", to=[quiet_tenant.bcc_address], subject="Buy now", message_id="<s@b>")
    inbound_id, outcome = deliver(mail)
    assert outcome is Outcome.held
    reason = inbound(quiet_sessions, inbound_id).hold_reason
    assert reason is not None
    assert "belongs to none of" in reason
    assert persons(quiet_sessions, quiet_tenant) == {}


def test_a_contact_reply_joins_the_users_thread_in_either_arrival_order(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]],
    matcher: Matcher,
    quiet_sessions: Sessions,
    quiet_tenant: Tenant,
) -> None:
    original = make_mail(
        sender=quiet_tenant.user_email, to=["lee@client.example"], subject="Quote", message_id="<q1@a>"
    )
    reply = make_mail(
        sender="Lee <lee@client.example>",
        to=[quiet_tenant.user_email],
        cc=[quiet_tenant.bcc_address],
        subject="Re: Quote",
        message_id="<q2@c>",
        in_reply_to="<q1@a>",
        references=["<q1@a>"],
    )
    reply_id, first = deliver(reply)  # the contact's reply overtakes the user's message
    assert first is Outcome.held
    _, second = deliver(original)
    assert second is Outcome.stored
    # Storing the user's message released the reply back to the matcher.
    assert inbound(quiet_sessions, reply_id).status == "received"
    assert matcher.process(reply_id) is Outcome.stored
    placed = stored(quiet_sessions, quiet_tenant, "q2@c")
    assert placed.kind == "contact"
    assert placed.thread_id == stored(quiet_sessions, quiet_tenant, "q1@a").thread_id


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({"Auto-Submitted": "auto-replied"}, "auto_reply"),
        ({"X-Autoreply": "yes"}, "auto_reply"),
        ({"Precedence": "bulk"}, "bulk"),
        ({"List-Id": "<news.vendor.example>"}, "bulk"),
    ],
)
def test_machine_mail_is_stored_flagged_and_creates_nobody(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]],
    quiet_sessions: Sessions,
    quiet_tenant: Tenant,
    headers: dict[str, str],
    kind: str,
) -> None:
    mail = make_mail(
        sender="Robot <robot@vendor.example>",
        to=[quiet_tenant.user_email],
        cc=["someone@else.example"],
        subject="News about your offer",
        message_id="<auto@v>",
    )
    for name, value in headers.items():
        mail[name] = value
    _, outcome = deliver(mail)
    assert outcome is Outcome.stored
    message = stored(quiet_sessions, quiet_tenant, "auto@v")
    assert message.kind == kind
    assert message.kind_reason
    assert persons(quiet_sessions, quiet_tenant) == {}


def test_a_bounce_marks_the_bounced_address_on_its_person(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    new_person(quiet_sessions, quiet_tenant, "Gone Person", "gone@client.example")
    dsn = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.acme.example>\r\n"
        b"To: " + quiet_tenant.user_email.encode() + b"\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"Message-ID: <dsn-1@mx>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.acme.example\r\n\r\n"
        b"Final-Recipient: rfc822; gone@client.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--B--\r\n"
    )
    _, outcome = deliver(dsn)
    assert outcome is Outcome.stored
    assert stored(quiet_sessions, quiet_tenant, "dsn-1@mx").kind == "bounce"
    with quiet_sessions() as session:
        email = session.scalars(select(PersonEmail).where(PersonEmail.address == "gone@client.example")).one()
    assert email.bounced_at is not None


# --- forwarded replies --------------------------------------------------------------------------------------


def test_an_inline_forward_stores_the_original_with_its_real_author(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    body = (
        "FYI, see below.\n\n"
        "---------- Forwarded message ---------\n"
        "From: Maria Garcia <maria.garcia@prospect.example>\n"
        "Date: Mon, 23 Nov 2026 at 09:15\n"
        "Subject: Pricing question\n"
        f"To: Sam Seller <{quiet_tenant.user_email}>\n"
        "Cc: Tom Boss <tom@prospect.example>\n\n"
        "Hi Sam,\n\ncould you send me the enterprise pricing?\n\nMaria\n"
    )
    mail = make_mail(
        sender=quiet_tenant.user_email, to=[quiet_tenant.bcc_address], subject="Fwd: Pricing question", body=body
    )
    _, outcome = deliver(mail)
    assert outcome is Outcome.stored
    with quiet_sessions() as session:
        message = session.scalars(select(Message).where(Message.account_id == quiet_tenant.account_id)).one()
    assert message.kind == "forwarded"
    assert (message.from_name, message.from_address) == ("Maria Garcia", "maria.garcia@prospect.example")
    assert message.subject == "Pricing question"
    assert message.direction == "inbound"
    assert message.forwarded_by_user_id == quiet_tenant.user_id
    assert message.forward_confidence is not None
    assert message.forward_confidence >= 0.5
    assert "enterprise pricing" in (message.text_body or "")
    people = persons(quiet_sessions, quiet_tenant)
    assert set(people) == {"maria.garcia@prospect.example", "tom@prospect.example"}
    assert people["maria.garcia@prospect.example"].created_by_rule == "participant-of-forwarded-mail"


def test_an_attached_original_keeps_its_message_id_and_threads_exactly(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    original = make_mail(
        sender="Maria <maria@prospect.example>",
        to=[quiet_tenant.user_email],
        subject="Contract",
        message_id="<orig-7@prospect>",
        attachments=[("contract.pdf", "application/pdf", b"%PDF contract")],
    )
    forward = make_mail(sender=quiet_tenant.user_email, to=[quiet_tenant.bcc_address], subject="Fwd: Contract")
    forward.add_attachment(original)
    _, outcome = deliver(forward)
    assert outcome is Outcome.stored
    message = stored(quiet_sessions, quiet_tenant, "orig-7@prospect")
    assert message.kind == "forwarded"
    assert message.from_address == "maria@prospect.example"

    answer = make_mail(
        sender=quiet_tenant.user_email,
        to=["maria@prospect.example"],
        subject="Re: Contract",
        message_id="<ans@acme>",
        in_reply_to="<orig-7@prospect>",
        references=["<orig-7@prospect>"],
    )
    deliver(answer)
    assert stored(quiet_sessions, quiet_tenant, "ans@acme").thread_id == message.thread_id


# --- people and organizations -------------------------------------------------------------------------------


def test_people_rules_blocklist_deleted_persons_and_sub_addresses(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    set_account(quiet_sessions, quiet_tenant, blocklist=["blocked.example", "spam@x.example"])
    removed = new_person(quiet_sessions, quiet_tenant, "Removed", "removed@client.example")
    with transaction(quiet_sessions) as session:
        session.get_one(Person, removed).deleted_at = datetime.now(UTC)
    mail = make_mail(
        sender=quiet_tenant.user_email,
        to=["a@blocked.example", "spam@x.example", "removed@client.example", "kept+tag@client.example"],
        subject="Rules",
        message_id="<rules@acme>",
    )
    deliver(mail)
    people = persons(quiet_sessions, quiet_tenant)
    assert set(people) == {"removed@client.example", "kept@client.example"}
    assert people["removed@client.example"].deleted_at is not None  # not re-created, still deleted
    with quiet_sessions() as session:
        linked = session.scalars(
            select(MessagePerson.person_id).where(
                MessagePerson.message_id == stored(quiet_sessions, quiet_tenant, "rules@acme").id
            )
        ).all()
    assert removed not in linked


def test_more_new_people_than_the_cap_holds_the_message_and_creates_none(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    set_account(quiet_sessions, quiet_tenant, max_people_per_message=3)
    mail = make_mail(
        sender=quiet_tenant.user_email,
        to=[f"person{n}@client.example" for n in range(4)],
        subject="Mass mail",
        message_id="<mass@acme>",
    )
    inbound_id, outcome = deliver(mail)
    assert outcome is Outcome.held
    reason = inbound(quiet_sessions, inbound_id).hold_reason
    assert reason is not None
    assert "4 people" in reason
    assert "at most 3" in reason
    assert persons(quiet_sessions, quiet_tenant) == {}
    with quiet_sessions() as session:
        assert session.scalars(select(Message).where(Message.account_id == quiet_tenant.account_id)).all() == []


def test_the_people_cap_counts_all_originals_of_one_forward_together(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    # Two attached originals with two new people each: each is under the cap of 3, the forward is not.
    set_account(quiet_sessions, quiet_tenant, max_people_per_message=3)
    forward = make_mail(sender=quiet_tenant.user_email, to=[quiet_tenant.bcc_address], subject="Fwd: two threads")
    for n in range(2):
        forward.add_attachment(
            make_mail(
                sender=f"Writer {n} <writer{n}@client{n}.example>",
                to=[quiet_tenant.user_email, f"colleague{n}@client{n}.example"],
                subject=f"Thread {n}",
                message_id=f"<cap-orig-{n}@client>",
            )
        )
    inbound_id, outcome = deliver(forward)
    assert outcome is Outcome.held
    reason = inbound(quiet_sessions, inbound_id).hold_reason
    assert reason is not None
    assert "4 people" in reason
    assert "at most 3" in reason
    assert persons(quiet_sessions, quiet_tenant) == {}
    with quiet_sessions() as session:
        assert session.scalars(select(Message).where(Message.account_id == quiet_tenant.account_id)).all() == []


def test_two_workers_meeting_the_same_new_address_create_one_person(
    matcher: Matcher, quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    mails = [
        make_mail(
            sender=quiet_tenant.user_email, to=["new.contact@client.example"], subject=f"S{n}", message_id=f"<r{n}@a>"
        )
        for n in range(6)
    ]
    ids = [receive(quiet_sessions, quiet_tenant, mail) for mail in mails]
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(matcher.process, ids))
    assert outcomes == [Outcome.stored] * 6
    assert list(persons(quiet_sessions, quiet_tenant)) == ["new.contact@client.example"]


def test_work_domains_become_organizations_when_enabled_and_free_mail_never(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    set_account(quiet_sessions, quiet_tenant, create_organizations=True)
    mail = make_mail(
        sender=quiet_tenant.user_email,
        to=["cto@bright-robotics.example", "jo.private@gmail.com"],
        subject="Demo",
        message_id="<org@acme>",
    )
    deliver(mail)
    people = persons(quiet_sessions, quiet_tenant)
    with quiet_sessions() as session:
        organizations = session.scalars(
            select(Organization).where(Organization.account_id == quiet_tenant.account_id)
        ).all()
    assert [o.name for o in organizations] == ["Bright Robotics"]
    assert people["cto@bright-robotics.example"].organization_id == organizations[0].id
    assert people["jo.private@gmail.com"].organization_id is None


def test_an_existing_organization_claims_persons_of_its_domain(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    with transaction(quiet_sessions) as session:
        organization = Organization(account_id=quiet_tenant.account_id, name="Globex")
        session.add(organization)
        session.flush()
        session.add(
            OrganizationDomain(
                account_id=quiet_tenant.account_id, organization_id=organization.id, domain="globex.example"
            )
        )
        organization_id = organization.id
    deliver(make_mail(sender=quiet_tenant.user_email, to=["hank@globex.example"], subject="Hi", message_id="<g@a>"))
    assert persons(quiet_sessions, quiet_tenant)["hank@globex.example"].organization_id == organization_id


# --- deals --------------------------------------------------------------------------------------------------


def thread_of(sessions: Sessions, tenant: Tenant, message_id: str) -> Thread:
    with sessions() as session:
        return session.get_one(Thread, stored(sessions, tenant, message_id).thread_id)


def test_one_open_deal_links_the_thread_and_won_deals_never_do(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    jane = new_person(quiet_sessions, quiet_tenant, "Jane", "jane@client.example")
    open_deal = new_deal(quiet_sessions, quiet_tenant, jane, "Renewal")
    new_deal(quiet_sessions, quiet_tenant, jane, "Last year", status="won")
    deliver(
        make_mail(sender=quiet_tenant.user_email, to=["jane@client.example"], subject="Renewal", message_id="<d1@a>")
    )
    thread = thread_of(quiet_sessions, quiet_tenant, "d1@a")
    assert (thread.deal_id, thread.deal_rule) == (open_deal, "single-open-deal")


def test_several_open_deals_ask_the_user_with_reasons(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    jane = new_person(quiet_sessions, quiet_tenant, "Jane", "jane@client.example")
    bob = new_person(quiet_sessions, quiet_tenant, "Bob", "bob@client.example")
    deals = {new_deal(quiet_sessions, quiet_tenant, jane, "A"), new_deal(quiet_sessions, quiet_tenant, bob, "B")}
    deliver(
        make_mail(
            sender=quiet_tenant.user_email,
            to=["jane@client.example", "bob@client.example"],
            subject="Both",
            message_id="<d2@a>",
        )
    )
    thread = thread_of(quiet_sessions, quiet_tenant, "d2@a")
    assert thread.deal_id is None
    with quiet_sessions() as session:
        question = session.scalars(select(Disambiguation).where(Disambiguation.thread_id == thread.id)).one()
    assert question.status == "pending"
    assert {uuid.UUID(c["deal_id"]) for c in question.candidates} == deals
    reasons = {r for c in question.candidates for r in c["reasons"]}
    assert any("Jane" in r for r in reasons)
    assert any("Bob" in r for r in reasons)


def test_a_deal_sub_address_routes_explicitly_and_a_declined_thread_stays_unlinked(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    jane = new_person(quiet_sessions, quiet_tenant, "Jane", "jane@client.example")
    routed = new_deal(quiet_sessions, quiet_tenant, jane, "Routed", status="won")
    local, domain = quiet_tenant.bcc_address.split("@")
    deliver(
        make_mail(sender=quiet_tenant.user_email, to=["jane@client.example"], subject="Routed", message_id="<s1@a>"),
        envelope_to=f"{local}+deal-{routed}@{domain}",
    )
    thread = thread_of(quiet_sessions, quiet_tenant, "s1@a")
    assert (thread.deal_id, thread.deal_rule) == (routed, "sub-address")

    other = new_person(quiet_sessions, quiet_tenant, "Other", "other@client.example")
    new_deal(quiet_sessions, quiet_tenant, other, "Open one")
    deliver(make_mail(sender=quiet_tenant.user_email, to=["x@else.example"], subject="Declined", message_id="<n1@a>"))
    with transaction(quiet_sessions) as session:
        declined = session.get_one(Thread, stored(quiet_sessions, quiet_tenant, "n1@a").thread_id)
        declined.deal_rule = "user-declined"
    deliver(
        make_mail(
            sender=quiet_tenant.user_email,
            to=["other@client.example"],
            subject="Re: Declined",
            message_id="<n2@a>",
            references=["<n1@a>"],
        )
    )
    assert thread_of(quiet_sessions, quiet_tenant, "n2@a").deal_id is None


def test_the_new_text_leaves_out_quoted_history(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant
) -> None:
    body = (
        "Sounds good, let's meet Tuesday.\n\n"
        "On Mon, Nov 23, 2026 at 9:00 AM Kim <kim@c.example> wrote:\n> Can we meet?\n"
    )
    deliver(
        make_mail(
            sender=quiet_tenant.user_email, to=["kim@c.example"], subject="Re: Meet", body=body, message_id="<nt@a>"
        )
    )
    assert stored(quiet_sessions, quiet_tenant, "nt@a").new_text == "Sounds good, let's meet Tuesday."


def test_a_contact_reply_without_references_is_placed_by_subject_in_either_order(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]],
    matcher: Matcher,
    quiet_sessions: Sessions,
    quiet_tenant: Tenant,
) -> None:
    # Some clients drop References; subject, a shared participant and time still place the reply.
    reply = make_mail(
        sender="Lee <lee@client.example>",
        to=[quiet_tenant.user_email],
        cc=[quiet_tenant.bcc_address],
        subject="AW: Rollout plan for Q3",
        message_id="<nr2@c>",
    )
    original = make_mail(
        sender=quiet_tenant.user_email, to=["lee@client.example"], subject="Rollout plan for Q3", message_id="<nr1@a>"
    )
    reply_id, first = deliver(reply)
    assert first is Outcome.held
    deliver(original)
    assert inbound(quiet_sessions, reply_id).status == "received"  # released by the user's message
    assert matcher.process(reply_id) is Outcome.stored
    placed = stored(quiet_sessions, quiet_tenant, "nr2@c")
    assert placed.kind == "contact"
    assert placed.thread_id == stored(quiet_sessions, quiet_tenant, "nr1@a").thread_id

    later = make_mail(
        sender="Lee <lee@client.example>",
        to=[quiet_tenant.user_email],
        subject="Re: Rollout plan for Q3",
        message_id="<nr3@c>",
    )
    assert deliver(later)[1] is Outcome.stored
    assert stored(quiet_sessions, quiet_tenant, "nr3@c").thread_id == placed.thread_id


@pytest.mark.parametrize("order", ["user first", "contact first"])
def test_a_contact_reply_with_only_outlooks_thread_index_finds_its_conversation(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]],
    matcher: Matcher,
    quiet_sessions: Sessions,
    quiet_tenant: Tenant,
    order: str,
) -> None:
    # Outlook keeps the first 22 bytes of Thread-Index for the whole conversation and appends 5 per reply. The
    # reply has no References and a subject of its own: only the conversation id can place it.
    root = bytes(range(30, 52))
    mine = make_mail(
        sender=quiet_tenant.user_email, to=["ines@client.example"], subject="Quote for 2027", message_id="<ti1@a>"
    )
    mine["Thread-Index"] = base64.b64encode(root).decode()
    reply = make_mail(
        sender="Ines <ines@client.example>",
        to=[quiet_tenant.user_email],
        cc=[quiet_tenant.bcc_address],
        subject="Our numbers",
        message_id="<ti2@c>",
    )
    reply["Thread-Index"] = base64.b64encode(root + b"\x05\x04\x03\x02\x01").decode()
    if order == "user first":
        deliver(mine)
        reply_id, outcome = deliver(reply)
        assert outcome is Outcome.stored
    else:
        reply_id, outcome = deliver(reply)
        assert outcome is Outcome.held
        deliver(mine)
        assert inbound(quiet_sessions, reply_id).status == "received"  # released by the user's message
        assert matcher.process(reply_id) is Outcome.stored
    placed = stored(quiet_sessions, quiet_tenant, "ti2@c")
    assert placed.kind == "contact"
    assert placed.thread_id == stored(quiet_sessions, quiet_tenant, "ti1@a").thread_id


@pytest.mark.parametrize("order", ["jane first", "both first"])
def test_the_deal_outcome_does_not_depend_on_arrival_order(
    deliver: Callable[..., tuple[uuid.UUID, Outcome]], quiet_sessions: Sessions, quiet_tenant: Tenant, order: str
) -> None:
    jane = new_person(quiet_sessions, quiet_tenant, "Jane", "jane@client.example")
    bob = new_person(quiet_sessions, quiet_tenant, "Bob", "bob@client.example")
    new_deal(quiet_sessions, quiet_tenant, jane, "Jane's deal")
    new_deal(quiet_sessions, quiet_tenant, bob, "Bob's deal")
    to_jane = make_mail(sender=quiet_tenant.user_email, to=["jane@client.example"], subject="Plan", message_id="<p1@a>")
    to_both = make_mail(
        sender=quiet_tenant.user_email,
        to=["jane@client.example", "bob@client.example"],
        subject="Re: Plan",
        message_id="<p2@a>",
        references=["<p1@a>"],
    )
    for mail in [to_jane, to_both] if order == "jane first" else [to_both, to_jane]:
        deliver(mail)
    thread = thread_of(quiet_sessions, quiet_tenant, "p1@a")
    assert thread.deal_id is None
    with quiet_sessions() as session:
        question = session.scalars(select(Disambiguation).where(Disambiguation.thread_id == thread.id)).one()
    assert question.status == "pending"
    assert len(question.candidates) == 2


def test_a_batch_decides_each_threads_deal_once_with_all_its_people(
    quiet_sessions: Sessions, quiet_tenant: Tenant, tmp_path: Path
) -> None:
    """Jane's mail alone would link the thread to her deal; Bob's reply in the same batch brings his deal too. The
    batch asks the user once, as one-at-a-time processing ends up doing, without first announcing a link that the
    next message of the batch overturns."""
    jane = new_person(quiet_sessions, quiet_tenant, "Jane", "jane@client.example")
    bob = new_person(quiet_sessions, quiet_tenant, "Bob", "bob@client.example")
    janes_deal = new_deal(quiet_sessions, quiet_tenant, jane, "Jane's deal")
    bobs_deal = new_deal(quiet_sessions, quiet_tenant, bob, "Bob's deal")
    with transaction(quiet_sessions) as session:
        session.add(
            WebhookSubscription(
                account_id=quiet_tenant.account_id,
                url="https://hooks.example/mailroom",
                events=list(WebhookEvent),
                secret="s3cret",
            )
        )
    plan = make_mail(sender=quiet_tenant.user_email, to=["jane@client.example"], subject="Plan", message_id="<b1@a>")
    reply = make_mail(
        sender=quiet_tenant.user_email,
        to=["jane@client.example", "bob@client.example"],
        subject="Re: Plan",
        message_id="<b2@a>",
        references=["<b1@a>"],
    )
    other = make_mail(sender=quiet_tenant.user_email, to=["jane@client.example"], subject="Lunch", message_id="<b3@a>")
    inbound_ids = [receive(quiet_sessions, quiet_tenant, mail) for mail in (plan, reply, other)]
    in_one_batch = Matcher(sessions=quiet_sessions, blobs=LocalBlobStore(tmp_path / "blobs"), batch_size=16)
    assert set(in_one_batch.process_due(inbound_ids).values()) == {Outcome.stored}

    planned = thread_of(quiet_sessions, quiet_tenant, "b1@a")
    lunch = thread_of(quiet_sessions, quiet_tenant, "b3@a")
    assert planned.deal_id is None
    assert (lunch.deal_id, lunch.deal_rule) == (janes_deal, "single-open-deal")
    with quiet_sessions() as session:
        question = session.scalars(select(Disambiguation).where(Disambiguation.thread_id == planned.id)).one()
        events = session.execute(
            select(WebhookDelivery.event, WebhookDelivery.payload)
            .where(WebhookDelivery.account_id == quiet_tenant.account_id)
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        ).all()
    assert {uuid.UUID(c["deal_id"]) for c in question.candidates} == {janes_deal, bobs_deal}
    linked = [payload["data"]["thread_id"] for event, payload in events if event == WebhookEvent.thread_linked]
    assert linked == [str(lunch.id)]
    asked = [payload["data"]["thread_id"] for event, payload in events if event == WebhookEvent.disambiguation_created]
    assert asked == [str(planned.id)]
    stored_deals = {
        payload["data"]["message_id"]: payload["data"]["deal_id"]
        for event, payload in events
        if event == WebhookEvent.message_stored
    }
    assert len(stored_deals) == 3
    assert stored_deals == {
        str(stored(quiet_sessions, quiet_tenant, "b1@a").id): None,
        str(stored(quiet_sessions, quiet_tenant, "b2@a").id): None,
        str(stored(quiet_sessions, quiet_tenant, "b3@a").id): str(janes_deal),
    }
