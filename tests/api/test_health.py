"""Health, readiness, the OpenAPI document and the interactive docs."""

from __future__ import annotations

import httpx

from tests.support.stack import Stack


def test_healthz_and_readyz_need_no_token(api_stack: Stack) -> None:
    assert httpx.get(f"{api_stack.api_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{api_stack.api_url}/readyz").json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_openapi_documents_every_route_and_its_problems(api_stack: Stack) -> None:
    # FastAPI builds the document on the first request (seconds for ~65 paths on a busy machine); this only
    # guards against a hang.
    document = httpx.get(f"{api_stack.api_url}/openapi.json", timeout=60).json()
    assert document["openapi"].startswith("3.1")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path.startswith("/v1/"):
                assert {"401", "403", "422"} <= set(responses), (method, path)
                for code, response in responses.items():
                    if int(code) >= 400 and code != "416":  # a 416 has no body, only Content-Range
                        assert list(response["content"]) == ["application/problem+json"], (method, path, code)
            if "{" in path:
                assert "404" in responses, (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_interactive_docs_page(api_stack: Stack) -> None:
    page = httpx.get(f"{api_stack.api_url}/docs")
    assert page.status_code == 200
    assert "swagger-ui" in page.text
    assert "/openapi.json" in page.text
