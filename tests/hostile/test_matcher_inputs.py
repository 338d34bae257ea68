"""Hostile mail must never stall the matcher: each attack goes through real SMTP to the real gateway, worker and
API, is answered 250, ends stored or held (never failed, never lost), and ordinary mail sent right after it is
visible promptly. The timeouts below only detect a stalled matcher; they are not speed targets."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.matcher.mail.parsing import MAX_ATTACHMENTS
from shared.db import make_engine, make_session_factory
from shared.migrate import upgrade
from tests.conftest import Infra, Tenant, new_tenant, stack_env
from tests.matcher.mail.test_slow_inputs import SLOW_INPUTS
from tests.support.servers import checkout_database_name, database_url, recreate_database
from tests.support.stack import Stack, make_mail, send, wait_for

# A stalled matcher shows up as minutes; a busy test machine as seconds.
VISIBLE_WITHIN_SECONDS = 90
_QUEUED = re.compile(r"2\.0\.0 queued as ([0-9a-f-]{36})")


def addressed(raw: bytes, tenant: Tenant) -> bytes:
    """The attack with a Message-ID of its own and the tenant's Smart-BCC address as a recipient."""
    unique = f"<hostile-{uuid.uuid4().hex}@example.com>".encode()
    raw = raw.replace(b"<slow@example.com>", unique)
    return raw.replace(b"To: bob@example.com", f"To: bob@example.com, {tenant.bcc_address}".encode(), 1)


def deliver(stack: Stack, tenant: Tenant, raw: bytes) -> str:
    reply = send(stack.smtp_port, [tenant.bcc_address], raw, sender="alice@example.com")
    queued = _QUEUED.fullmatch(reply)
    assert queued is not None, reply
    return queued.group(1)


def settled(api: httpx.Client, inbound_id: str) -> dict[str, object]:
    """The inbound message once the matcher is done with it (its status no longer `received`)."""

    def done() -> dict[str, object] | None:
        found: dict[str, object] = api.get(f"/v1/held-messages/{inbound_id}").json()
        return found if found.get("status") not in (None, "received") else None

    return wait_for(done, timeout=VISIBLE_WITHIN_SECONDS, what=f"the matcher to finish {inbound_id}")


def stored_message(api: httpx.Client, message_id: str) -> dict[str, object]:
    def listed() -> dict[str, object] | None:
        page: list[dict[str, object]] = api.get("/v1/messages", params={"limit": "200"}).json()["data"]
        return next((m for m in page if m["message_id"] == message_id), None)

    return wait_for(listed, timeout=VISIBLE_WITHIN_SECONDS, what=f"{message_id} in the API")


def assert_kept_and_matcher_responsive(stack: Stack, tenant: Tenant, api: httpx.Client, raw: bytes) -> None:
    attack = settled(api, deliver(stack, tenant, raw))
    assert attack["status"] in ("processed", "held"), attack

    ordinary_id = f"<ordinary-{uuid.uuid4().hex}@acme.example>"
    ordinary = make_mail(
        sender=tenant.user_email, to=["lee@client.example"], subject="Tuesday's call", message_id=ordinary_id
    )
    send(stack.smtp_port, [tenant.bcc_address], ordinary, sender=tenant.user_email)
    assert stored_message(api, ordinary_id.strip("<>"))["subject"] == "Tuesday's call"


@pytest.fixture(scope="module")
def attacked_stack(infra: Infra, worker_id: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The attacks get a stack, database and queues of their own: a worker of another stack on the same database
    would otherwise claim slow attacks in its batches and keep that stack's ordinary mail waiting."""
    name = checkout_database_name(worker_id, "attacked")
    recreate_database(infra.admin_url, name)
    url = database_url(infra.admin_url, name)
    upgrade(url)
    data_dir = tmp_path_factory.mktemp("attacked")
    running = Stack(
        env=stack_env(infra, data_dir, database_url=url, queue_namespace=f"{infra.namespace}-attacked"),
        log_dir=data_dir,
    )
    running.start("gateway", "worker", "api")
    yield running
    running.stop()


@pytest.fixture
def attacked(attacked_stack: Stack) -> Iterator[tuple[Tenant, httpx.Client]]:
    engine = make_engine(attacked_stack.env["MAILROOM_DATABASE_URL"])
    tenant = new_tenant(make_session_factory(engine))
    engine.dispose()
    with httpx.Client(
        base_url=attacked_stack.api_url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=30
    ) as api:
        yield tenant, api


@pytest.mark.parametrize("attack", sorted(SLOW_INPUTS))
def test_attack_is_kept_and_ordinary_mail_still_flows(
    attack: str, attacked_stack: Stack, attacked: tuple[Tenant, httpx.Client]
) -> None:
    tenant, api = attacked
    assert_kept_and_matcher_responsive(attacked_stack, tenant, api, addressed(SLOW_INPUTS[attack], tenant))


def test_charset_names_of_raw_8bit_bytes_leave_the_message_stored_with_its_headers(
    attacked_stack: Stack, attacked: tuple[Tenant, httpx.Client]
) -> None:
    """An encoded word and a part whose charset names are raw 8-bit bytes once made the whole message unparsable:
    no sender, so held as written by an unknown sender, and no Message-ID to thread it by."""
    tenant, api = attacked
    message_id = f"charset-8bit-{uuid.uuid4().hex}@acme.example"
    raw = (
        f"From: Sam Seller <{tenant.user_email}>\r\nTo: Lee <lee@client.example>\r\nMessage-ID: <{message_id}>\r\n"
        "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nSubject: Offer =?\xe9?Q?Gr=FC=DFe?= attached\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\xe9\r\n\r\n"
    ).encode("latin-1") + "Grüße, Sam\r\n".encode()

    inbound = settled(api, deliver(attacked_stack, tenant, raw))
    assert inbound["status"] == "processed", inbound

    stored = stored_message(api, message_id)
    assert stored["from"] == {"name": "Sam Seller", "address": tenant.user_email}
    assert stored["subject"] == "Offer Grüße attached"
    assert stored["direction"] == "outbound"
    assert str(stored["text_body"]).strip() == "Grüße, Sam"


def test_thousands_of_tiny_parts_store_a_bounded_number_of_files(
    attacked_stack: Stack, attacked: tuple[Tenant, httpx.Client]
) -> None:
    """Each file costs a blob write and a row: a message made of thousands of tiny parts once cost as many."""
    tenant, api = attacked
    message_id = f"many-parts-{uuid.uuid4().hex}@acme.example"
    parts = "".join(
        f"--b\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Disposition: attachment; filename=part{n}.bin\r\n\r\n{n}\r\n"
        for n in range(5_000)
    )
    raw = (
        f"From: Sam Seller <{tenant.user_email}>\r\nTo: Lee <lee@client.example>\r\nMessage-ID: <{message_id}>\r\n"
        "Subject: Scans\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        f"{parts}--b--\r\n"
    ).encode()

    assert_kept_and_matcher_responsive(attacked_stack, tenant, api, raw)

    stored = stored_message(api, message_id)
    files: list[dict[str, object]] = stored["attachments"]  # type: ignore[assignment]
    assert len(files) == MAX_ATTACHMENTS
    assert [file["filename"] for file in files[:2]] == ["part0.bin", "part1.bin"]
    defects: list[str] = stored["defects"]  # type: ignore[assignment]
    assert defects[0].startswith(f"{5_000 - MAX_ATTACHMENTS} more attachments were not stored as files")
    assert api.get(f"/v1/messages/{stored['id']}/raw").content == raw


# --- the budget, end to end -------------------------------------------------------------------------------------


@pytest.fixture
def tight_stack(infra: Infra, scratch_database: str, tmp_path: Path) -> Iterator[tuple[Stack, Tenant]]:
    """A stack whose analysis budget no message can meet, so every message takes the degraded path. It has a
    database and queues of its own: the shared stack's worker and sweep must not process its mail."""
    engine = make_engine(scratch_database)
    tenant = new_tenant(make_session_factory(engine))
    env = stack_env(
        infra,
        tmp_path,
        database_url=scratch_database,
        queue_namespace=f"{infra.namespace}-tight",
        analysis_time_limit_seconds="0.001",
    )
    running = Stack(env=env, log_dir=tmp_path)
    running.start("gateway", "worker", "api")
    yield running, tenant
    running.stop()
    engine.dispose()


def test_message_past_the_analysis_budget_is_stored_from_its_headers(tight_stack: tuple[Stack, Tenant]) -> None:
    stack, tenant = tight_stack
    message_id = f"<budget-{uuid.uuid4().hex}@acme.example>"
    mail = make_mail(
        sender=f"Sam Seller <{tenant.user_email}>",
        to=["Lee <lee@client.example>"],
        subject="Rollout plan",
        body="On Mon, 1 Dec 2025 10:00 lee@client.example wrote:\n> ok\n" * 5_000,
        message_id=message_id,
    )

    send(stack.smtp_port, [tenant.bcc_address], mail, sender=tenant.user_email)

    with httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {tenant.token}"}) as api:
        stored = stored_message(api, message_id.strip("<>"))
    assert stored["subject"] == "Rollout plan"
    assert stored["to"] == [{"name": "Lee", "address": "lee@client.example"}]
    assert stored["direction"] == "outbound"
    defects: list[str] = stored["defects"]  # type: ignore[assignment]
    assert any(defect.endswith("(time budget); stored with headers only") for defect in defects)
