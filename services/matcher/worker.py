"""Run matcher workers: dramatiq consumer threads, plus the recovery sweep at start and periodically."""

from __future__ import annotations

import multiprocessing
import signal
import threading
import types
import uuid

import dramatiq
import structlog
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.orm import Session, sessionmaker

from services.matcher.actors import register_actors
from services.matcher.authentication import SenderAuthConfig
from services.matcher.drafts import register_draft_sender
from services.matcher.mail.budget import Analyser
from services.matcher.pipeline import Matcher
from services.matcher.recurring import register_recurring_actor
from services.matcher.sweep import sweep
from services.matcher.webhooks import make_webhook_sender, register_webhook_actor
from shared import metrics
from shared.blobstore import LocalBlobStore
from shared.broker import inbound_received, make_broker
from shared.db import make_engine, make_session_factory
from shared.events import install_after_commit_enqueue
from shared.logging import configure_logging
from shared.settings import Settings

log = structlog.get_logger(__name__)


def run(settings: Settings, processes: int) -> None:
    if processes == 1:
        metrics.serve(settings.worker_metrics_port, settings.metrics_host)
        run_one(settings)
        return
    serve_metrics_sum = metrics.shared_with_child_processes()  # before the children start
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_child, args=(settings,), name=f"worker-{n}") for n in range(processes)]
    for child in children:
        child.start()
    serve_metrics_sum(settings.worker_metrics_port, settings.metrics_host)

    def forward(signum: int, _frame: types.FrameType | None) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                child.terminate()  # SIGTERM: each child drains its own actors

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()


def _child(settings: Settings) -> None:
    configure_logging("worker", level=settings.log_level, log_format=settings.log_format)
    run_one(settings)


def run_one(settings: Settings) -> None:
    engine = make_engine(settings.require_database_url(), pool_size=settings.worker_threads + 1)
    sessions = make_session_factory(engine)
    broker = make_broker(settings.require_redis_url(), settings.queue_namespace)
    analyser = Analyser.from_settings(settings)
    matcher = Matcher(
        sessions=sessions,
        blobs=LocalBlobStore(settings.blob_root),
        enqueue=lambda inbound_id: _enqueue(broker, inbound_id),
        sender_auth=SenderAuthConfig.from_settings(settings),
        analyse_all=analyser.analyse_all,
        batch_size=settings.matcher_batch_size,
        max_attempts=settings.process_max_attempts,
        lease_seconds=settings.matcher_claim_seconds,
    )
    register_actors(broker, matcher, settings)
    webhooks = make_webhook_sender(sessions, broker, settings)
    register_webhook_actor(broker, webhooks)
    drafts = register_draft_sender(broker, sessions, settings)
    recurrences = register_recurring_actor(broker, sessions)
    # Webhook events the matcher emits leave right after its commit; the webhook sweep catches any that did not.
    install_after_commit_enqueue(sessions, broker)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    at_start = settings.analysis_processes_at_start
    analyser.start(settings.worker_threads if at_start is None else at_start)
    worker = dramatiq.Worker(
        broker, worker_threads=settings.worker_threads, worker_timeout=settings.worker_idle_poll_ms
    )
    worker.start()
    # At start, anything still waiting was accepted before this worker existed: no grace period. "Started" is
    # logged after this catch-up, so whoever waits for it knows later arrivals are not the start sweep's.
    sweep_safely(sessions, broker, settings, grace_seconds=0)
    webhooks.sweep_safely(grace_seconds=0)
    drafts.sweep_safely(grace_seconds=0)
    recurrences.sweep_safely()
    log.info("worker.started", threads=settings.worker_threads)
    while not stop.wait(settings.sweep_interval_seconds):
        sweep_safely(sessions, broker, settings, grace_seconds=settings.sweep_grace_seconds)
        webhooks.sweep_safely(grace_seconds=settings.sweep_grace_seconds)
        drafts.sweep_safely(grace_seconds=settings.sweep_grace_seconds)
        recurrences.sweep_safely()

    log.info("worker.draining")
    worker.stop(timeout=int(settings.process_time_limit_seconds * 1000))
    broker.close()
    analyser.close()
    webhooks.client.close()
    engine.dispose()
    log.info("worker.stopped")


def sweep_safely(
    sessions: sessionmaker[Session], broker: RedisBroker, settings: Settings, *, grace_seconds: float
) -> None:
    try:
        sweep(
            sessions,
            broker,
            grace_seconds=grace_seconds,
            max_attempts=settings.process_max_attempts,
            ids_per_message=settings.matcher_batch_size,
        )
    except Exception:
        log.exception("sweep.failed")


def _enqueue(broker: RedisBroker, inbound_id: uuid.UUID) -> None:
    broker.enqueue(inbound_received(inbound_id))
