"""The HTTP API application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.api.problems import install_problem_handlers
from services.api.routes import crm, health, mailbox
from shared.blobstore import LocalBlobStore
from shared.db import make_engine, make_session_factory
from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.require_database_url(), pool_size=10)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        app.state.blobs = LocalBlobStore(settings.blob_root)
        yield
        engine.dispose()

    app = FastAPI(
        title="Mailroom API",
        version="1",
        description="Smart-BCC mail, threads, attachments and the CRM records they are linked to.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(mailbox.router)
    app.include_router(crm.router)
    return app
