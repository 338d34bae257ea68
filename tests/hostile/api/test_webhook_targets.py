"""Webhook deliveries aimed inward (SSRF), over real sockets: the worker's sender, on a real database, refuses
targets that resolve to non-public addresses and records why; when private targets are allowed it delivers to
the address it checked, with the original Host, ignoring proxy settings, never following a redirect, and
reading no more than the start of a response."""

from __future__ import annotations

import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.webhooks import WebhookSender, make_webhook_sender
from shared.broker import make_broker
from shared.db import transaction
from shared.events import PersonCreated, WebhookSettings, emit
from shared.models import CreatedFrom, WebhookDelivery, WebhookSubscription
from shared.settings import Settings
from tests.conftest import Infra, new_tenant
from tests.smtp_gateway.test_starttls import self_signed


@dataclass
class Receiver:
    port: int = 0
    status: int = 204
    location: str | None = None
    endless_body: bool = False
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    bytes_written: int = 0

    def url(self, host: str = "localhost", path: str = "/hook") -> str:
        return f"http://{host}:{self.port}{path}"


def _serve(state: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((self.path, dict(self.headers)))
            self.send_response(state.status)
            if state.location:
                self.send_header("Location", state.location)
            if state.endless_body:
                self.send_header("Content-Length", str(1 << 30))  # 1 GiB announced
                self.end_headers()
                chunk = b"x" * 65536
                try:
                    while state.bytes_written < 1 << 30:
                        self.wfile.write(chunk)
                        state.bytes_written += len(chunk)
                except OSError:
                    return  # the sender hung up, as it should
            else:
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _serve(Receiver())


@pytest.fixture
def elsewhere() -> Iterator[Receiver]:
    yield from _serve(Receiver())


@pytest.fixture
def broker(infra: Infra) -> Iterator[RedisBroker]:
    broker = make_broker(infra.redis_url, f"{infra.namespace}-webhook-targets")
    yield broker
    broker.close()


def make_sender(sessions: sessionmaker[Session], broker: RedisBroker, *, allow_private: bool) -> WebhookSender:
    settings = Settings(webhook_allow_private_targets=allow_private, webhook_timeout_seconds=5, webhook_max_attempts=3)
    return make_webhook_sender(sessions, broker, settings)


def pending_delivery(sessions: sessionmaker[Session], url: str) -> uuid.UUID:
    """A subscription to `url` and one event for it, written the way the API and the matcher write them."""
    tenant = new_tenant(sessions)
    with transaction(sessions) as session:
        session.add(
            WebhookSubscription(account_id=tenant.account_id, url=url, events=["person.created"], secret="whsec_t")
        )
        session.flush()
        emit(
            session,
            tenant.account_id,
            PersonCreated(person_id=uuid.uuid4(), addresses=["kim@client.example"], created_from=CreatedFrom.api),
        )
    with transaction(sessions) as session:
        return session.scalars(select(WebhookDelivery.id).where(WebhookDelivery.account_id == tenant.account_id)).one()


def delivery(sessions: sessionmaker[Session], delivery_id: uuid.UUID) -> WebhookDelivery:
    with transaction(sessions) as session:
        row = session.get_one(WebhookDelivery, delivery_id)
        session.expunge(row)
        return row


def test_targets_resolving_to_loopback_are_refused_and_the_reason_recorded(
    quiet_sessions: sessionmaker[Session], broker: RedisBroker, receiver: Receiver
) -> None:
    sender = make_sender(quiet_sessions, broker, allow_private=False)
    for host in ("localhost", "2130706433", "0x7f.0.0.1", "[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]"):
        delivery_id = pending_delivery(quiet_sessions, receiver.url(host))
        assert sender.deliver(delivery_id) == "failed", host  # permanent: retrying cannot help
        row = delivery(quiet_sessions, delivery_id)
        assert row.status == "failed"
        assert row.last_status_code is None
        assert row.last_error is not None
        assert "loopback" in row.last_error, row.last_error
        assert "public" in row.last_error
        assert row.attempt_log[-1]["error"] == row.last_error
    assert receiver.requests == []


def test_a_local_receiver_gets_the_delivery_when_private_targets_are_allowed_whatever_the_proxy_settings(
    quiet_sessions: sessionmaker[Session], broker: RedisBroker, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # nothing listens there
    sender = make_sender(quiet_sessions, broker, allow_private=True)
    delivery_id = pending_delivery(quiet_sessions, receiver.url("localhost", "/hook?source=mailroom"))
    assert sender.deliver(delivery_id) == "succeeded"
    ((path, headers),) = receiver.requests
    assert path == "/hook?source=mailroom"
    assert headers["Host"] == f"localhost:{receiver.port}"  # the name, though the connection went to the address
    assert headers["Mailroom-Signature"].startswith("t=")
    assert delivery(quiet_sessions, delivery_id).last_status_code == 204


def test_a_redirect_is_not_followed(
    quiet_sessions: sessionmaker[Session], broker: RedisBroker, receiver: Receiver, elsewhere: Receiver
) -> None:
    receiver.status, receiver.location = 307, elsewhere.url("127.0.0.1")
    sender = make_sender(quiet_sessions, broker, allow_private=True)
    delivery_id = pending_delivery(quiet_sessions, receiver.url())
    assert sender.deliver(delivery_id) == "retry"
    row = delivery(quiet_sessions, delivery_id)
    assert (row.last_status_code, row.last_error) == (307, "HTTP 307")
    assert len(receiver.requests) == 1
    assert elsewhere.requests == []


def test_only_the_start_of_a_huge_response_is_read(
    quiet_sessions: sessionmaker[Session], broker: RedisBroker, receiver: Receiver
) -> None:
    receiver.status, receiver.endless_body = 200, True
    sender = make_sender(quiet_sessions, broker, allow_private=True)
    delivery_id = pending_delivery(quiet_sessions, receiver.url())
    assert sender.deliver(delivery_id) == "succeeded"
    # Socket buffers take a few MiB; the gigabyte announced was never read.
    assert receiver.bytes_written < 64 * 1024 * 1024


def test_subscriptions_to_inward_addresses_are_refused_by_the_api(api: httpx.Client) -> None:
    for url in (
        "http://[::ffff:10.0.0.1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",  # 169.254.169.254 through NAT64
        "http://[2002:c0a8:101::1]/hook",  # 192.168.1.1 through 6to4
        "http://[fd00::1]/hook",
        "http://100.64.0.1/hook",
        "http://[::1]:8025/v1/tokens",
        "http://metadata.internal/",
    ):
        response = api.post("/v1/webhooks", json={"url": url, "events": ["person.created"]})
        assert response.status_code == 422, f"{url}: {response.text}"
        assert response.json()["errors"][0]["field"] == "url"
    assert api.get("/v1/webhooks").json()["data"] == []
    created = api.post("/v1/webhooks", json={"url": "https://crm.example.com/hook", "events": ["person.created"]})
    assert created.status_code == 201, created.text


@dataclass
class TlsReceiver:
    port: int
    server_names: list[str | None]
    hosts: list[str]


@contextmanager
def _serve_tls(cert_file: Path, key_file: Path) -> Iterator[TlsReceiver]:
    state = TlsReceiver(port=0, server_names=[], hosts=[])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            state.hosts.append(self.headers["Host"])
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda _sock, name, _ctx: state.server_names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("certified_name", "outcome"), [("localhost", "succeeded"), ("other.example", "retry")])
def test_https_to_a_pinned_address_still_presents_and_verifies_the_name(
    quiet_sessions: sessionmaker[Session], broker: RedisBroker, tmp_path: Path, certified_name: str, outcome: str
) -> None:
    cert_file, key_file = self_signed(tmp_path, certified_name)
    with _serve_tls(cert_file, key_file) as receiver:
        # The production client, except that it trusts the test's own certificate authority.
        client = httpx.Client(
            verify=ssl.create_default_context(cafile=str(cert_file)),
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=5,
        )
        settings = WebhookSettings(allow_private_targets=True, max_attempts=3)
        sender = WebhookSender(sessions=quiet_sessions, broker=broker, settings=settings, client=client)
        delivery_id = pending_delivery(quiet_sessions, f"https://localhost:{receiver.port}/hook")
        assert sender.deliver(delivery_id) == outcome
        # The connection went to the checked address, but TLS was asked for (and verified against) the name.
        assert receiver.server_names[:1] == ["localhost"]
        if outcome == "succeeded":
            assert receiver.hosts == [f"localhost:{receiver.port}"]
        else:
            assert receiver.hosts == []
            error = delivery(quiet_sessions, delivery_id).last_error
            assert error is not None
            assert "CERTIFICATE_VERIFY_FAILED" in error
