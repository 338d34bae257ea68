"""The HTTP API application: routers per domain, problem+json errors, and an OpenAPI 3.1 document that
describes every error a route can answer with."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi

from services.api.account.routes import router as account_router
from services.api.calendar.routes import router as calendar_router
from services.api.chooser.routes import router as chooser_router
from services.api.crm.routes import router as crm_router
from services.api.custom_fields.routes import router as custom_fields_router
from services.api.drafts.routes import router as drafts_router
from services.api.health.routes import router as health_router
from services.api.held.routes import router as held_router
from services.api.leads.routes import router as leads_router
from services.api.limits import RateLimiter, RequestLimits
from services.api.mailbox.routes import router as mailbox_router
from services.api.metrics.routes import router as metrics_router
from services.api.problems import PROBLEM_JSON, Problem, ProblemDetail, install_problem_handlers
from services.api.reports.routes import router as reports_router
from services.api.timelines.routes import router as timelines_router
from services.api.tokens.routes import router as tokens_router
from services.api.transfer.routes import router as transfer_router
from services.api.users.routes import confirmations_router
from services.api.users.routes import router as users_router
from services.api.webhooks.routes import router as webhooks_router
from shared.blobstore import LocalBlobStore
from shared.broker import make_broker
from shared.db import make_engine, make_session_factory
from shared.events import WebhookSettings, install_after_commit_enqueue
from shared.settings import Settings

DESCRIPTION = """\
Smart-BCC mail, threads, attachments and the CRM records they are linked to.

* **Auth**: `Authorization: Bearer <token>`. Scopes: `read` (GET only), `write` (also CRM records, the deal
  chooser, held mail), `admin` (also tokens, users, webhooks). Everything is scoped to the token's account: an id
  of another account is a `404`, exactly like an id that never existed.
* **Ids** are opaque strings. **Lists** return `{"data": [...], "next_cursor": ...}`, newest first; pass
  `next_cursor` back as `cursor` until it is null.
* **Errors** are `application/problem+json` (RFC 9457) with a stable `type` URI and, for validation, `errors`
  per field.
* **Limits**: request bodies are capped (`413`); each token (or, without a valid one, each client address) has a
  request rate with a burst, and past it gets `429` with `Retry-After`. Responses carry `RateLimit-Limit` and
  `RateLimit-Remaining`.
* **Webhooks** are signed: `Mailroom-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
"""

ROUTERS = (
    health_router,
    account_router,
    tokens_router,
    users_router,
    confirmations_router,
    mailbox_router,
    timelines_router,
    chooser_router,
    held_router,
    crm_router,
    custom_fields_router,
    drafts_router,
    transfer_router,
    reports_router,
    leads_router,
    calendar_router,
    webhooks_router,
    metrics_router,
)


def reject_nul_bytes(request: Request) -> None:
    """Postgres text cannot hold NUL; a query with one is a client error, not a database failure."""
    if any("\x00" in key or "\x00" in value for key, value in request.query_params.multi_items()):
        raise Problem(
            422,
            "validation",
            "The request is not valid",
            "Query parameters must not contain NUL characters.",
            errors=[{"field": "query", "message": "contains a NUL character"}],
        )


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.require_database_url(), pool_size=10)
        broker = make_broker(settings.require_redis_url(), settings.queue_namespace)
        sessions = make_session_factory(engine)
        # Work a request queues (reprocessing, webhook deliveries) is sent only once its transaction committed.
        install_after_commit_enqueue(sessions, broker)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = sessions
        app.state.broker = broker
        app.state.blobs = LocalBlobStore(settings.blob_root)
        app.state.webhook_settings = WebhookSettings.of(settings)
        app.state.rate_limiter = RateLimiter(
            broker.client,
            settings.queue_namespace,
            per_minute=settings.api_rate_limit_per_minute,
            burst=settings.api_rate_limit_burst,
        )
        yield
        broker.close()
        engine.dispose()

    app = FastAPI(
        title="Mailroom API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        dependencies=[Depends(reject_nul_bytes)],
    )
    install_problem_handlers(app)
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.api_max_body_bytes,
        max_import_bytes=settings.api_max_import_bytes,
    )
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]  # FastAPI's documented customization
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with every error response a route can give documented as a problem+json body."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = ProblemDetail.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(problem_schema.pop("$defs", {}))
    components["ProblemDetail"] = problem_schema
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    problem = {"content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for code, description in _problems_of(path, method).items():
                responses[code] = {"description": description, **problem}
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400 and "application/json" in response.get("content", {}):
                    response["content"] = {PROBLEM_JSON: response["content"].pop("application/json")}
    app.openapi_schema = schema
    return schema


def _problems_of(path: str, method: str) -> dict[str, str]:
    if not path.startswith("/v1/"):
        return {}
    problems = {
        "400": "The request cannot be read (a body that is not JSON, a cursor this API did not give out).",
        "401": "No token, or an unknown or revoked one.",
        "403": "The token's scope does not allow this.",
        "413": "The request body is larger than the API accepts (`MAILROOM_API_MAX_BODY_BYTES`).",
        "422": "The request is not valid; `errors` says why, per field.",
        "429": "Too many requests from this token (or client address); retry after `Retry-After` seconds.",
    }
    if "{" in path:
        problems["404"] = "No such record in your account (records of other accounts are never revealed)."
    if method in ("post", "patch", "put", "delete"):
        problems["409"] = "The request conflicts with the record's current state (e.g. already in use)."
    return problems
