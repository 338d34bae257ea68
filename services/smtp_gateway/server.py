"""Run the gateway: listen, and on SIGTERM/SIGINT stop taking mail, let transactions in flight finish, exit."""

from __future__ import annotations

import asyncio
import signal
import ssl

import structlog
import uvloop
from psycopg_pool import AsyncConnectionPool

from services.smtp_gateway.enqueue import AfterCommitEnqueuer
from services.smtp_gateway.handler import GatewayHandler
from services.smtp_gateway.limits import Anvil, Limits
from services.smtp_gateway.protocol import GatewaySMTP
from services.smtp_gateway.store import InboundStore
from shared import metrics
from shared.broker import make_broker
from shared.db import libpq_url
from shared.settings import Settings

log = structlog.get_logger(__name__)


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.smtp_tls_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.smtp_tls_cert_file, settings.smtp_tls_key_file)
    return context


def run(settings: Settings) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))


async def serve(settings: Settings) -> None:
    pool = AsyncConnectionPool(
        libpq_url(settings.require_database_url()),
        min_size=2,
        max_size=8,
        # Past this, the session gets a 4xx and the sender retries: better than holding it open indefinitely.
        timeout=5,
        open=False,
    )
    await pool.open()
    broker = make_broker(settings.require_redis_url(), settings.queue_namespace)
    store = InboundStore(pool, recipient_cache_seconds=settings.smtp_recipient_cache_seconds)
    # Ids committed close together travel in one queue message, which the matcher places as one batch.
    enqueuer = AfterCommitEnqueuer(
        broker,
        ids_per_message=settings.matcher_batch_size,
        linger_seconds=settings.enqueue_linger_ms / 1000,
    )
    anvil = Anvil(Limits.from_settings(settings))
    handler = GatewayHandler(settings.bcc_domain, store, enqueuer, anvil)
    sessions: set[GatewaySMTP] = set()

    tls = _tls_context(settings)

    def new_session() -> GatewaySMTP:
        return GatewaySMTP(
            sessions,
            anvil,
            handler,
            hostname=settings.smtp_hostname,
            ident="Mailroom SMTP gateway",
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls,
            timeout=settings.smtp_timeout_seconds,
            require_starttls=tls is not None and settings.smtp_require_starttls,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(new_session, settings.smtp_host, settings.smtp_port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    port = server.sockets[0].getsockname()[1]
    log.info("gateway.listening", smtp=f"{settings.smtp_host}:{port}")
    metrics.serve(settings.gateway_metrics_port, settings.metrics_host)
    await stop.wait()

    log.info("gateway.draining", sessions=len(sessions))
    server.close()
    handler.draining = True
    deadline = loop.time() + settings.smtp_drain_seconds
    # Envelopes leave the weak set when their session resets or closes, which signals nothing: poll. A closed
    # session's envelope can linger there until the garbage collector breaks its cycle, so with no session left
    # there is nothing to wait for.
    while sessions and handler.open_transactions and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for session in list(sessions):
        session.close_session()
    await enqueuer.drain(seconds=max(1.0, deadline - loop.time()))
    await enqueuer.close()
    await store.close()
    await pool.close()
    broker.close()
    log.info("gateway.stopped")
