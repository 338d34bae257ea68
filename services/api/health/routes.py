"""Liveness and readiness for orchestrators (no token needed: they reveal nothing about any account)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import Engine, text

from services.api.problems import ProblemDetail, problem_response

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]
    redis: Literal["ok"]


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ProblemDetail, "description": "The database or Redis cannot be reached."}},
)
def readyz(request: Request) -> Readiness | JSONResponse:
    """The database and Redis answer: this instance can serve requests and enqueue work."""
    failing = [name for name, check in (("database", _database), ("redis", _redis)) if not check(request)]
    if failing:
        return problem_response(503, "not-ready", "Not ready", f"Cannot reach: {', '.join(failing)}.")
    return Readiness(status="ok", database="ok", redis="ok")


def _database(request: Request) -> bool:
    engine: Engine = request.app.state.engine
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def _redis(request: Request) -> bool:
    try:
        return bool(request.app.state.broker.client.ping())
    except Exception:
        return False
