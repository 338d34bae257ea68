"""Serve the API with uvicorn (which drains open requests on SIGTERM)."""

from __future__ import annotations

import uvicorn

from services.api.app import create_app
from shared.settings import Settings


def run(settings: Settings) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,  # our structlog setup formats uvicorn's loggers too
        proxy_headers=True,
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()
