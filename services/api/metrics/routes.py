"""`/metrics` for Prometheus: this process' counters, plus queue depth and message counts read at scrape time.

Open like `/healthz` unless `MAILROOM_METRICS_TOKEN` is set (it shows counts, never mail or account data); then a
scraper sends that token as a bearer token. It is not an API token and opens nothing else.
"""

from __future__ import annotations

import hmac

from dramatiq.brokers.redis import RedisBroker
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry
from sqlalchemy import Engine, text

from services.api.problems import problem_response
from shared import metrics
from shared.broker import Queue
from shared.settings import Settings

router = APIRouter(tags=["metrics"])

_INBOUND_COUNTS = text(
    "SELECT status, count(*) FROM inbound_messages WHERE status IN ('received', 'held', 'failed') GROUP BY status"
)


@router.get("/metrics", include_in_schema=False)
def scrape(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if settings.metrics_token and not _bearer_matches(request, settings.metrics_token):
        return problem_response(401, "unauthorized", "Authentication required", "This /metrics wants its token.")
    return Response(metrics.exposition(REGISTRY, _state_registry(request)), media_type=CONTENT_TYPE_LATEST)


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def _state_registry(request: Request) -> CollectorRegistry:
    state = request.app.state
    registry: CollectorRegistry | None = getattr(state, "metrics_registry", None)
    if registry is None:
        broker: RedisBroker = state.broker
        engine: Engine = state.engine
        registry = CollectorRegistry()
        registry.register(metrics.StateCollector(lambda: queue_lengths(broker), lambda: inbound_counts(engine)))
        state.metrics_registry = registry
    return registry


def queue_lengths(broker: RedisBroker) -> dict[str, int]:
    names = [name for queue in Queue for name in (queue.value, f"{queue.value}.DQ")]
    with broker.client.pipeline(transaction=False) as pipeline:
        for name in names:
            pipeline.llen(f"{broker.namespace}:{name}")
        return dict(zip(names, pipeline.execute(), strict=True))


def inbound_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        # A scrape must never queue behind a slow database for long: no number beats a stuck scraper.
        connection.execute(text("SET LOCAL statement_timeout = '2s'"))
        return {str(row[0]): int(row[1]) for row in connection.execute(_INBOUND_COUNTS).all()}
