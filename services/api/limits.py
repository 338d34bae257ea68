"""What one client may make the API do: how large a request body may be, and how many requests it may send.

The body limit is plain ASGI around the application, so it answers before routing, authentication or any
database work: an anonymous client cannot make the API buffer a large upload. A declared `Content-Length` over
the limit is refused at once; a body without one (chunked) is counted as it is read and refused as soon as it
passes the limit. (FastAPI's own `max_body_size` answers in plain text, and for a body the route never reads
only after the route has run.)

The rate limit is GCRA, the generic cell rate algorithm, in one Redis script shared by every API process: each
subject (a token, or a client address for requests without a valid token) may send `per_minute` requests a
minute on average and `burst` at once. Redis stores one timestamp per subject that expires when it is idle.
If Redis cannot be reached the request is let through: the limit protects the service, and an outage of the
limiter must not become an outage of the API (`/readyz` reports Redis).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import redis
import structlog
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.problems import Problem, problem_response

log = structlog.get_logger(__name__)

# Where a request's rate-limit headers wait for its response (set by the dependency, sent by the middleware).
_RATE_HEADERS_KEY = "mailroom.rate_limit_headers"


IMPORT_PATH = "/v1/imports/"


class _BodyTooLarge(Exception):  # noqa: N818 -- a signal to stop reading, not an error in our code
    pass


class RequestLimits:
    """ASGI middleware: the body size limit, and the rate-limit headers of every response."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_import_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # CSV imports are the one body that is a file, not a record: they get a limit of their own.
        self.max_import_bytes = max_import_bytes

    def _limit(self, scope: Scope) -> int:
        return self.max_import_bytes if str(scope.get("path", "")).startswith(IMPORT_PATH) else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send)
            return

        rate_headers: list[tuple[bytes, bytes]] = []
        scope[_RATE_HEADERS_KEY] = rate_headers
        received = 0
        too_large = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal response_started
            if too_large:
                # Whatever the application made of the interrupted body (FastAPI turns it into a 400), the
                # client gets the real reason once.
                if message["type"] == "http.response.start" and not response_started:
                    response_started = True
                    await self._refuse(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                response_started = True
                message = {**message, "headers": [*message.get("headers", []), *rate_headers]}
            await send(message)

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except Exception:
            if not too_large:
                raise
            if not response_started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "content-too-large",
            "Request body too large",
            f"Request bodies are limited to {self._limit(scope)} bytes"
            + (" (larger files go through `mailroom import`)." if self._limit(scope) == self.max_import_bytes else "."),
        )
        # The rest of the body is never read: the connection cannot carry another request after this one.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server answers a malformed length itself
    return None


# KEYS[1]: the subject's key. ARGV: now, emission interval, tolerance (all in ms). Returns {allowed, retry
# after ms, remaining}. The stored value is the theoretical arrival time (TAT) of the next request.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - tolerance
if allowed_at > now then
  return {0, math.ceil(allowed_at - now), 0}
end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now))
return {1, 0, math.floor((tolerance - (next_tat - now)) / interval)}
"""


@dataclass(frozen=True)
class RateVerdict:
    allowed: bool
    limit: int
    remaining: int
    retry_after_seconds: int


class RateLimiter:
    def __init__(self, client: redis.Redis[Any], namespace: str, *, per_minute: int, burst: int) -> None:
        self._script = client.register_script(_GCRA)
        self._prefix = f"{namespace}:rate-limit:"
        self.per_minute = per_minute
        self.burst = burst

    def charge(self, subject: str) -> RateVerdict | None:
        """Count one request of `subject`; None when there is no limit or Redis cannot tell."""
        if self.per_minute == 0:
            return None
        interval_ms = 60_000 / self.per_minute
        try:
            allowed, retry_ms, remaining = self._script(
                keys=[self._prefix + subject],
                args=[int(time.time() * 1000), interval_ms, interval_ms * self.burst],
            )
        except redis.RedisError as exc:
            log.warning("api.rate_limit_unavailable", error=type(exc).__name__)
            return None
        return RateVerdict(
            allowed=bool(allowed),
            limit=self.per_minute,
            remaining=max(int(remaining), 0),
            retry_after_seconds=max(1, math.ceil(int(retry_ms) / 1000)),
        )


def enforce_rate_limit(request: Request, subject: str) -> None:
    """Charge one request to `subject` (`token:<id>` or `client:<address>`); 429 past its limit."""
    limiter: RateLimiter = request.app.state.rate_limiter
    verdict = limiter.charge(subject)
    if verdict is None:
        return
    headers = {"RateLimit-Limit": str(verdict.limit), "RateLimit-Remaining": str(verdict.remaining)}
    recorded: list[tuple[bytes, bytes]] | None = request.scope.get(_RATE_HEADERS_KEY)
    if recorded is not None:
        recorded[:] = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    if not verdict.allowed:
        raise Problem(
            429,
            "rate-limited",
            "Too many requests",
            f"This token (or, without one, this client address) may send {verdict.limit} requests a minute "
            f"and {limiter.burst} at once. Retry after {verdict.retry_after_seconds} s.",
            headers={"Retry-After": str(verdict.retry_after_seconds)},
        )


def client_subject(request: Request) -> str:
    host: Any = request.client.host if request.client is not None else "unknown"
    return f"client:{host}"
