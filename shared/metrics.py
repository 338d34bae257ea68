"""Every Prometheus metric Mailroom has, and the one-line helpers the services call at the points they measure.

Counters and histograms live in the process that sees the event: SMTP replies and accepted mail in the gateway,
processing outcomes, latency and webhook deliveries in the workers. What is state rather than an event (queue
depth, how many messages wait, are held or failed right now) is read from Redis and Postgres when the API's
`/metrics` is scraped, so it is right whichever process changed it.

Worker processes: with `MAILROOM_WORKER_PROCESSES` > 1 the supervisor switches prometheus_client to its
multiprocess mode (each process writes its samples to files in one directory) and serves their sum on the one
`MAILROOM_WORKER_METRICS_PORT`; a single worker process serves its own registry.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

SMTP_REPLIES = Counter(
    "mailroom_smtp_replies_total",
    "SMTP replies the gateway gave to MAIL, RCPT and DATA (and to sessions it turned away), by command and code.",
    ["command", "code"],
)
MESSAGES_ACCEPTED = Counter(
    "mailroom_messages_accepted_total",
    "Inbound messages committed by the gateway (one per Smart-BCC recipient) before it answered 250.",
)
ENQUEUE_FAILURES = Counter(
    "mailroom_enqueue_failures_total",
    "Accepted messages the gateway could not enqueue right away (the recovery sweep picks them up).",
)
MESSAGES_PROCESSED = Counter(
    "mailroom_messages_processed_total",
    "Messages the matcher finished, by outcome: stored, duplicate or held.",
    ["outcome"],
)
MESSAGES_HELD = Counter(
    "mailroom_messages_held_total",
    "Messages the matcher held (kept, not placed) with a reason users see in /v1/held-messages.",
)
MESSAGES_FAILED = Counter(
    "mailroom_messages_failed_total",
    "Messages the matcher gave up on after MAILROOM_PROCESS_MAX_ATTEMPTS attempts (status failed).",
)
PROCESSING_ERRORS = Counter(
    "mailroom_processing_errors_total",
    "Matcher attempts that raised (each is retried until the last one).",
)
PROCESSING_LATENCY = Histogram(
    "mailroom_processing_latency_seconds",
    "From the gateway's commit (received_at) to the matcher's commit (processed or held).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
WEBHOOK_DELIVERIES = Counter(
    "mailroom_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: succeeded, retry (scheduled again) or failed (for good).",
    ["outcome"],
)

# The finished outcomes the matcher reports; anything else (busy, missing, already done) did no work.
_FINISHED = {"stored", "duplicate", "held"}


# --- gateway ------------------------------------------------------------------------------------------------------


def smtp_reply(command: str, reply: object) -> None:
    """Count one reply by its three-digit code; anything but a reply line (a hook the handler lacks) is skipped."""
    if isinstance(reply, str) and reply[:3].isdigit():
        SMTP_REPLIES.labels(command=command, code=reply[:3]).inc()


def messages_accepted(count: int) -> None:
    MESSAGES_ACCEPTED.inc(count)


def enqueue_failed(count: int) -> None:
    ENQUEUE_FAILURES.inc(count)


# --- matcher ------------------------------------------------------------------------------------------------------


def message_finished(outcome: str, received_at: datetime) -> None:
    """A message was processed or held; call after its transaction committed."""
    if outcome not in _FINISHED:
        return
    MESSAGES_PROCESSED.labels(outcome=outcome).inc()
    if outcome == "held":
        MESSAGES_HELD.inc()
    PROCESSING_LATENCY.observe(max(0.0, (datetime.now(UTC) - received_at).total_seconds()))


def processing_failed(*, for_good: bool) -> None:
    PROCESSING_ERRORS.inc()
    if for_good:
        MESSAGES_FAILED.inc()


def webhook_delivery(outcome: str) -> None:
    """What one delivery attempt came to; `not-due` (nothing was sent) is not counted."""
    if outcome != "not-due":
        WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()


# --- exposing -----------------------------------------------------------------------------------------------------


def serve(port: int, host: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve `registry` on http://host:port/metrics from a daemon thread; port 0 means metrics are off."""
    if port:
        start_http_server(port, addr=host, registry=registry)


def shared_with_child_processes() -> Callable[[int, str], None]:
    """Put child processes started from now on in multiprocess mode; returns `serve` for the sum of their samples.

    Call it before the children start: they choose where to keep samples when they import prometheus_client.
    The samples' directory belongs to this supervisor and goes away when it exits.
    """
    from prometheus_client import multiprocess

    directory = tempfile.mkdtemp(prefix="mailroom-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)

    def serve_sum(port: int, host: str) -> None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        serve(port, host, registry)

    return serve_sum


class StateCollector(Collector):
    """Gauges read at scrape time: queue lengths from Redis, waiting / held / failed messages from Postgres.

    Each reader returns label → value; one that fails (a server down) leaves its gauge out of this scrape
    rather than failing the whole page.
    """

    def __init__(
        self,
        queue_lengths: Callable[[], dict[str, int]],
        inbound_counts: Callable[[], dict[str, int]],
    ) -> None:
        self._queue_lengths = queue_lengths
        self._inbound_counts = inbound_counts

    def collect(self) -> Iterable[Metric]:
        queues = _read_safely(self._queue_lengths)
        if queues is not None:
            depth = GaugeMetricFamily(
                "mailroom_queue_depth",
                "Messages waiting in a dramatiq queue (`.DQ`: retries waiting for their time), read from Redis.",
                labels=["queue"],
            )
            for queue, length in sorted(queues.items()):
                depth.add_metric([queue], length)
            yield depth
        counts = _read_safely(self._inbound_counts)
        if counts is not None:
            inbound = GaugeMetricFamily(
                "mailroom_inbound_messages",
                "Inbound messages by status right now: received (waiting for the matcher), held, failed.",
                labels=["status"],
            )
            for status in ("received", "held", "failed"):
                inbound.add_metric([status], counts.get(status, 0))
            yield inbound


def _read_safely(reader: Callable[[], dict[str, int]]) -> dict[str, int] | None:
    try:
        return reader()
    except Exception:
        return None


def exposition(*registries: CollectorRegistry) -> bytes:
    """The text format of several registries on one page (their metric names never overlap)."""
    return b"".join(generate_latest(registry) for registry in registries)
