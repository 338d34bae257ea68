"""API test fixtures: a stack of its own (so its worker may deliver webhooks to receivers on 127.0.0.1 and
retries quickly), tenants, and helpers that store mail the way the matcher does, for precise mailbox data."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.blobstore import LocalBlobStore
from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import upgrade
from shared.models import (
    Attachment,
    Direction,
    Disambiguation,
    DisambiguationStatus,
    InboundMessage,
    InboundStatus,
    Message,
    MessageKind,
    MessagePerson,
    MessagePersonRole,
    Thread,
    ThreadDealRule,
)
from tests.conftest import Infra, Tenant, new_tenant, stack_env
from tests.support.servers import checkout_database_name, database_url, postgres_admin_url, recreate_database, redis_url
from tests.support.stack import Stack
from tests.support.webhooks import Receiver, running_receiver

WEBHOOK_BACKOFF_SECONDS = 0.5
WEBHOOK_MAX_ATTEMPTS = 3


@pytest.fixture(scope="session")
def api_infra(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Infra]:
    work_dir = tmp_path_factory.mktemp("api-infra")
    with postgres_admin_url() as admin_url, redis_url(work_dir) as redis:
        name = checkout_database_name(worker_id, "api")
        recreate_database(admin_url, name)
        url = database_url(admin_url, name)
        upgrade(url)
        namespace = f"mailroom-api-test-{worker_id}-{uuid.uuid4().hex[:8]}"
        yield Infra(admin_url, url, url, redis, namespace, work_dir)


@pytest.fixture(scope="session")
def api_engine(api_infra: Infra) -> Iterator[Engine]:
    engine = make_engine(api_infra.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def api_sessions(api_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(api_engine)


@pytest.fixture(scope="session")
def api_stack(api_infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("api-stack")
    env = stack_env(
        api_infra,
        data_dir,
        webhook_allow_private_targets="true",
        webhook_backoff_seconds=str(WEBHOOK_BACKOFF_SECONDS),
        webhook_max_attempts=str(WEBHOOK_MAX_ATTEMPTS),
        webhook_timeout_seconds="5",
    )
    running = Stack(env=env, log_dir=data_dir)
    running.start("gateway", "worker", "api")
    yield running
    running.stop()


@pytest.fixture
def tenant(api_sessions: sessionmaker[Session]) -> Tenant:
    return new_tenant(api_sessions)


@pytest.fixture
def stranger(api_sessions: sessionmaker[Session]) -> Tenant:
    """Another account: none of its ids may ever show through `tenant`'s tokens, nor the other way round."""
    return new_tenant(api_sessions)


def client(stack: Stack, token: str) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def api(api_stack: Stack, tenant: Tenant) -> Iterator[httpx.Client]:
    with client(api_stack, tenant.token) as http:
        yield http


@pytest.fixture
def stranger_api(api_stack: Stack, stranger: Tenant) -> Iterator[httpx.Client]:
    with client(api_stack, stranger.token) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def api_blobs(api_stack: Stack) -> LocalBlobStore:
    return LocalBlobStore(Path(api_stack.env["MAILROOM_BLOB_DIR"]))


@pytest.fixture
def mail(api_sessions: sessionmaker[Session], api_blobs: LocalBlobStore, tenant: Tenant) -> MailStore:
    return MailStore(api_sessions, api_blobs, tenant)


@dataclass
class MailStore:
    """Stores threads and messages directly, as the matcher would, so mailbox tests control every field."""

    sessions: sessionmaker[Session]
    blobs: LocalBlobStore
    tenant: Tenant
    clock: datetime = field(default_factory=lambda: datetime(2026, 11, 1, 9, 0, tzinfo=UTC))

    def thread(
        self, subject: str = "Hello", *, deal_id: str | None = None, deal_rule: ThreadDealRule | None = None
    ) -> str:
        with transaction(self.sessions) as session:
            thread = Thread(
                account_id=self.tenant.account_id,
                subject=subject,
                normalized_subject=subject.lower(),
                deal_id=None if deal_id is None else uuid.UUID(deal_id),
                deal_rule=deal_rule,
            )
            session.add(thread)
            session.flush()
            return str(thread.id)

    def message(
        self,
        thread_id: str,
        *,
        subject: str = "Hello",
        text: str = "Hi there",
        html: str | None = None,
        sender: tuple[str | None, str] = ("Jane Doe", "jane@customer.example"),
        to: list[dict[str, Any]] | None = None,
        persons: list[tuple[str, MessagePersonRole]] = (),  # type: ignore[assignment]  # (person_id, role)
        attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
        user_id: uuid.UUID | None = None,
        sent_at: datetime | None = None,
        new_text: str | None = None,
        raw: bytes | None = None,
        session: Session | None = None,
    ) -> str:
        """Stored and committed; or, given a `session`, added to its transaction (which the caller commits)."""
        self.clock += timedelta(minutes=1)
        sent = sent_at or self.clock
        message_id_header = f"{uuid.uuid4().hex}@test.example"
        raw_bytes = (
            raw
            or (
                f"From: {sender[1]}\r\nTo: {self.tenant.user_email}\r\nSubject: {subject}\r\n"
                f"Message-ID: <{message_id_header}>\r\n\r\n{text}\r\n"
            ).encode()
        )
        with contextlib.nullcontext(session) if session is not None else transaction(self.sessions) as session:
            message = Message(
                account_id=self.tenant.account_id,
                user_id=user_id or self.tenant.user_id,
                thread_id=uuid.UUID(thread_id),
                message_id_header=message_id_header,
                references=[],
                subject=subject,
                from_name=sender[0],
                from_address=sender[1],
                to=to if to is not None else [{"name": "Sam Seller", "address": self.tenant.user_email}],
                cc=[],
                sent_at=sent,
                direction=Direction.inbound,
                text_body=text,
                html_body=html,
                new_text=new_text,
                defects=[],
                kind=MessageKind.contact,
            )
            session.add(message)
            session.flush()
            for person_id, role in persons:
                session.add(
                    MessagePerson(
                        account_id=self.tenant.account_id,
                        message_id=message.id,
                        person_id=uuid.UUID(person_id),
                        role=role,
                    )
                )
            for filename, content_type, content in attachments:
                session.add(
                    Attachment(
                        account_id=self.tenant.account_id,
                        message_id=message.id,
                        filename=filename,
                        content_type=content_type,
                        size=len(content),
                        sha256=self.blobs.put(self.tenant.account_id, content),
                    )
                )
            session.add(
                InboundMessage(
                    account_id=self.tenant.account_id,
                    user_id=user_id or self.tenant.user_id,
                    envelope_from=sender[1],
                    envelope_to=self.tenant.bcc_address,
                    raw=raw_bytes,
                    size=len(raw_bytes),
                    status=InboundStatus.processed,
                    attempts=0,
                    message_id=message.id,
                )
            )
            thread = session.get_one(Thread, uuid.UUID(thread_id))
            if thread.last_message_at is None or sent > thread.last_message_at:
                thread.last_message_at = sent
            return str(message.id)

    def disambiguation(self, thread_id: str, candidates: list[tuple[str, list[str]]]) -> str:
        with transaction(self.sessions) as session:
            item = Disambiguation(
                account_id=self.tenant.account_id,
                thread_id=uuid.UUID(thread_id),
                user_id=self.tenant.user_id,
                candidates=[{"deal_id": deal_id, "reasons": reasons} for deal_id, reasons in candidates],
                status=DisambiguationStatus.pending,
            )
            session.add(item)
            session.flush()
            return str(item.id)

    def held(self, raw: bytes, reason: str = "sender is not a verified address of the user") -> str:
        with transaction(self.sessions) as session:
            inbound = InboundMessage(
                account_id=self.tenant.account_id,
                user_id=self.tenant.user_id,
                envelope_from="someone@elsewhere.example",
                envelope_to=self.tenant.bcc_address,
                raw=raw,
                size=len(raw),
                status=InboundStatus.held,
                hold_reason=reason,
                attempts=1,
            )
            session.add(inbound)
            session.flush()
            return str(inbound.id)


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def collect(http: httpx.Client, path: str, *, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Walk every page of a list, checking each page is full until the last."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = http.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["data"]) == limit
