"""Prometheus metrics of a running stack: what ops graph and alert on moves when mail flows.

Its own stack on its own database and queue namespace (so no other test's mail lands in these counters), with
two worker processes behind one metrics port.
"""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.db import make_engine, make_session_factory
from tests.conftest import Infra, Tenant, new_tenant, stack_env
from tests.support.servers import free_port
from tests.support.stack import Stack, make_mail, send, wait_for

METRICS_TOKEN = "scrape-me-please"


def samples(url: str, *, token: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = httpx.get(url, headers=headers, timeout=10)
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def webhook_url() -> Iterator[str]:
    """A receiver that takes every delivery (what it receives is tests/api/test_webhooks.py's business)."""

    class Accept(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()
    server.server_close()


@pytest.fixture
def metered_stack(infra: Infra, scratch_database: str, tmp_path: Path) -> Iterator[Stack]:
    env = stack_env(
        infra,
        tmp_path,
        database_url=scratch_database,
        queue_namespace=f"{infra.namespace}-metrics",
        worker_processes="2",
        worker_threads="2",
        gateway_metrics_port=str(free_port()),
        worker_metrics_port=str(free_port()),
        metrics_token=METRICS_TOKEN,
        webhook_allow_private_targets="true",
    )
    running = Stack(env=env, log_dir=tmp_path)
    running.start("gateway", "worker", "api")
    yield running
    running.stop()


def api_client(stack: Stack, tenant: Tenant) -> httpx.Client:
    # As the other suites' clients: the first request to a freshly started API on a loaded two-core machine (a
    # cold start of its models and pool) can take longer than httpx's 5 s default.
    return httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=30)


def test_counters_and_histograms_move_as_mail_is_accepted_refused_and_processed(
    metered_stack: Stack, scratch_database: str, webhook_url: str
) -> None:
    env = metered_stack.env
    gateway_metrics = f"http://127.0.0.1:{env['MAILROOM_GATEWAY_METRICS_PORT']}/metrics"
    worker_metrics = f"http://127.0.0.1:{env['MAILROOM_WORKER_METRICS_PORT']}/metrics"
    api_metrics = f"{metered_stack.api_url}/metrics"
    engine = make_engine(scratch_database, pool_size=1)
    try:
        tenant = new_tenant(make_session_factory(engine))
    finally:
        engine.dispose()

    with api_client(metered_stack, tenant) as api:
        subscribed = api.post("/v1/webhooks", json={"url": webhook_url, "events": ["message.stored"]})
        assert subscribed.status_code == 201, subscribed.text

    mail = make_mail(sender=f"Sam <{tenant.user_email}>", to=["Dana <dana@client.example>"], subject="Metered")
    send(metered_stack.smtp_port, [tenant.bcc_address], mail)
    with smtplib.SMTP("127.0.0.1", metered_stack.smtp_port, timeout=30) as client:
        client.ehlo("tests.example")
        client.mail("sender@example.net")
        assert client.rcpt("nobody-here@bcc.mailroom.localhost")[0] == 550

    with api_client(metered_stack, tenant) as api:
        wait_for(lambda: api.get("/v1/messages").json()["data"], what="the message in the API")

    gateway = samples(gateway_metrics)
    assert value(gateway, "mailroom_messages_accepted_total") == 1
    assert value(gateway, "mailroom_smtp_replies_total", command="DATA", code="250") == 1
    assert value(gateway, "mailroom_smtp_replies_total", command="RCPT", code="250") == 1
    assert value(gateway, "mailroom_smtp_replies_total", command="RCPT", code="550") == 1

    # The worker that processed it may have committed a moment before its sample file is read: wait for it.
    def worker_counted() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        scraped = samples(worker_metrics)
        return scraped if value(scraped, "mailroom_processing_latency_seconds_count") else None

    worker = wait_for(worker_counted, what="the latency histogram to count the message")
    assert value(worker, "mailroom_processing_latency_seconds_count") == 1
    assert value(worker, "mailroom_processing_latency_seconds_bucket", le="+Inf") == 1
    assert value(worker, "mailroom_messages_processed_total", outcome="stored") == 1
    assert value(worker, "mailroom_messages_failed_total") == 0
    wait_for(
        lambda: value(samples(worker_metrics), "mailroom_webhook_deliveries_total", outcome="succeeded") == 1,
        what="the message.stored delivery to be counted",
    )

    # The API's page wants the metrics token when one is set, and reads queue and message state at scrape time.
    assert httpx.get(api_metrics, timeout=10).status_code == 401
    assert httpx.get(api_metrics, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=10).status_code == 401
    state = samples(api_metrics, token=METRICS_TOKEN)
    assert value(state, "mailroom_inbound_messages", status="received") == 0
    assert value(state, "mailroom_inbound_messages", status="held") == 0
    assert (("mailroom_queue_depth", frozenset({("queue", "inbound")}))) in state
    assert value(state, "mailroom_queue_depth", queue="inbound") == 0
