"""Errors as RFC 9457 problem details: a stable `type`, a human `title` and `detail`, never a stack trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://mailroom.dev/problems/"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `emails.0` or `query.limit`.")
    message: str


class ProblemDetail(BaseModel):
    """An RFC 9457 problem: `type` is stable and safe to branch on; `title`/`detail` are for people."""

    type: str = Field(examples=[TYPE_BASE + "not-found"])
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = Field(default=None, description="For `validation`: what is wrong, per field.")


class Problem(Exception):  # noqa: N818 -- it is a response, not an error in our code
    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def not_found(what: str) -> Problem:
    return Problem(404, "not-found", f"{what} not found", f"There is no {what.lower()} with this id in your account.")


def invalid(field: str, message: str, detail: str | None = None) -> Problem:
    """A 422 about one field of the body, shaped like the framework's own validation errors."""
    return Problem(
        422,
        "validation",
        "The request is not valid",
        detail or message,
        errors=[{"field": field, "message": message}],
    )


def conflict(detail: str) -> Problem:
    return Problem(409, "conflict", "Conflict", detail)


def problem_response(status: int, kind: str, title: str, detail: str | None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + kind, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


_KIND_BY_STATUS = {
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    400: ("bad-request", "Bad request"),
    413: ("content-too-large", "Request body too large"),
}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        response = problem_response(exc.status, exc.kind, exc.title, exc.detail, **exc.extra)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind, title = _KIND_BY_STATUS.get(exc.status_code, ("http-error", "Request failed"))
        response = problem_response(exc.status_code, kind, title, str(exc.detail) if exc.detail else None)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in error.get("loc", ()) if p != "body"), "message": str(error.get("msg"))}
            for error in exc.errors()
        ]
        return problem_response(
            422, "validation", "The request is not valid", "See `errors` for each field.", errors=errors
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("api.unexpected_error", error_type=type(exc).__name__, exc_info=exc)
        return problem_response(500, "internal", "Internal error", "Something went wrong on our side.")
