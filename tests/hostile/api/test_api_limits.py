"""Oversized bodies and floods against a real API process: each gets a problem+json answer, before any
authentication, and ordinary requests right after still work."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx

from services.api.problems import PROBLEM_JSON, TYPE_BASE
from tests.conftest import Tenant
from tests.hostile.api.conftest import MAX_BODY_BYTES, MAX_IMPORT_BYTES, RATE_BURST, RATE_PER_MINUTE
from tests.support.stack import Stack


def assert_problem(response: httpx.Response, status: int, kind: str) -> dict[str, object]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, object] = response.json()
    assert problem["type"] == TYPE_BASE + kind
    assert problem["status"] == status
    return problem


def raw_exchange(stack: Stack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library to fix them up) and read the answer until the server closes."""
    port = int(stack.env["MAILROOM_API_PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def still_works(api: httpx.Client) -> None:
    response = api.post("/v1/persons", json={"name": "Ordinary", "phone": "+1 555 0100"})
    assert response.status_code == 201, response.text
    assert api.get(f"/v1/persons/{response.json()['id']}").status_code == 200


def test_a_declared_huge_body_is_refused_before_authentication(limited_stack: Stack, api: httpx.Client) -> None:
    for authorization in (b"", b"Authorization: Bearer mr_not-a-token\r\n"):
        status, headers, body = raw_exchange(
            limited_stack,
            b"POST /v1/persons HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            + authorization
            + b"Content-Length: 10000000000\r\n\r\n",  # 10 GB announced, nothing sent
        )
        assert status == 413
        assert headers["content-type"] == PROBLEM_JSON
        assert headers["connection"] == "close"
        problem = json.loads(body)
        assert problem["type"] == TYPE_BASE + "content-too-large"
        assert str(MAX_BODY_BYTES) in problem["detail"]
    still_works(api)


def test_a_body_over_the_limit_is_413_not_401_even_on_routes_without_a_body(
    anonymous: httpx.Client, api: httpx.Client
) -> None:
    oversized = json.dumps({"name": "x" * (MAX_BODY_BYTES + 1)}).encode()
    for path in ("/v1/persons", "/v1/persons/not-an-id", "/v1/no-such-route"):
        response = anonymous.post(path, content=oversized, headers={"Content-Type": "application/json"})
        assert_problem(response, 413, "content-too-large")
    with_bad_token = {"Authorization": "Bearer mr_nope", "Content-Type": "application/json"}
    response = anonymous.post("/v1/persons", content=oversized, headers=with_bad_token)
    assert_problem(response, 413, "content-too-large")
    # Exactly at the limit is fine (and reaches authentication).
    at_limit = json.dumps({"name": "x" * (MAX_BODY_BYTES - len('{"name": ""}'))}).encode()
    assert len(at_limit) == MAX_BODY_BYTES
    assert_problem(anonymous.post("/v1/persons", content=at_limit), 401, "unauthorized")
    still_works(api)


def _chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    """A JSON body of `total` bytes, sent chunked (no Content-Length: the server learns its size by reading)."""
    yield b'{"name": "'
    left = total - len(b'{"name": ""}')
    while left > 0:
        yield b"x" * min(size, left)
        left -= size
    yield b'"}'


def test_a_chunked_body_is_counted_as_it_arrives(anonymous: httpx.Client, api: httpx.Client) -> None:
    response = anonymous.post("/v1/persons", content=_chunks(4 * MAX_BODY_BYTES))
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "content-too-large")
    response = api.post("/v1/persons", content=_chunks(4 * MAX_BODY_BYTES))
    assert_problem(response, 413, "content-too-large")
    # A chunked body under the limit is an ordinary request.
    response = api.post("/v1/persons", content=_chunks(1000), headers={"Content-Type": "application/json"})
    assert response.status_code == 422  # a 990-character name: refused by validation, not by size
    assert_problem(anonymous.post("/v1/persons", content=_chunks(1000)), 401, "unauthorized")
    still_works(api)


def test_a_token_past_its_rate_gets_429_with_retry_after_and_others_are_unaffected(
    limited_stack: Stack, api: httpx.Client, tenant: Tenant
) -> None:
    other_token = api.post("/v1/tokens", json={"scope": "read"}).json()["token"]  # request 1 of the burst
    remaining = []
    for _ in range(RATE_BURST - 1):
        response = api.get("/v1/persons")
        assert response.status_code == 200, response.text
        assert response.headers["ratelimit-limit"] == str(RATE_PER_MINUTE)
        remaining.append(int(response.headers["ratelimit-remaining"]))
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[-1] == 0
    limited = api.get("/v1/persons")
    problem = assert_problem(limited, 429, "rate-limited")
    assert "requests a minute" in str(problem["detail"])
    assert 1 <= int(limited.headers["retry-after"]) <= 60 / RATE_PER_MINUTE
    assert limited.headers["ratelimit-remaining"] == "0"
    assert api.post("/v1/persons", json={"name": "Throttled"}).status_code == 429  # writes too, nothing stored
    # Another token of the same account, and anonymous health checks, go on.
    with httpx.Client(base_url=limited_stack.api_url, headers={"Authorization": f"Bearer {other_token}"}) as other:
        persons = other.get("/v1/persons")
        assert persons.status_code == 200
        assert "Throttled" not in persons.text
    assert httpx.get(f"{limited_stack.api_url}/healthz").status_code == 200


def test_requests_without_a_valid_token_are_limited_per_client_address(
    limited_stack: Stack, anonymous: httpx.Client, tenant: Tenant
) -> None:
    for attempt in range(RATE_BURST):
        token = f"mr_guess-{attempt}"
        response = anonymous.get("/v1/persons", headers={"Authorization": f"Bearer {token}"} if attempt % 2 else {})
        assert_problem(response, 401, "unauthorized")
    assert_problem(anonymous.get("/v1/persons", headers={"Authorization": "Bearer mr_one-more"}), 429, "rate-limited")
    assert_problem(anonymous.get("/v1/persons"), 429, "rate-limited")
    # Another address is not affected, and a valid token from the throttled address counts against the token.
    with httpx.Client(base_url=limited_stack.api_url, headers={"X-Forwarded-For": "192.0.2.200"}) as elsewhere:
        assert_problem(elsewhere.get("/v1/persons"), 401, "unauthorized")
    authorized = anonymous.get("/v1/persons", headers={"Authorization": f"Bearer {tenant.token}"})
    assert authorized.status_code == 200


def test_csv_imports_have_a_limit_of_their_own(api: httpx.Client) -> None:
    """A CSV file bigger than any record body is still a normal import, up to the import limit."""
    rows = "".join(f"Person {n} {'x' * 200},+1 555 {n:07d}\n" for n in range(400))
    file = ("name,phone\n" + rows).encode()
    assert MAX_BODY_BYTES < len(file) < MAX_IMPORT_BYTES
    checked = api.post(
        "/v1/imports/persons", content=file, headers={"Content-Type": "text/csv"}, params={"dry_run": "true"}
    )
    assert checked.status_code == 200, checked.text[:500]

    too_big = file * (MAX_IMPORT_BYTES // len(file) + 1)
    problem = assert_problem(
        api.post("/v1/imports/persons", content=too_big, headers={"Content-Type": "text/csv"}), 413, "content-too-large"
    )
    assert str(MAX_IMPORT_BYTES) in str(problem["detail"])
    assert "mailroom import" in str(problem["detail"])
    still_works(api)
