"""A stack with small API limits, so the hostile suite can reach them with little traffic: bodies up to 64 KiB,
and per token (or client address) a burst of 30 requests refilled at one a minute."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Infra, Tenant, new_tenant, stack_env
from tests.support.stack import Stack

MAX_BODY_BYTES = 64 * 1024
MAX_IMPORT_BYTES = 256 * 1024
RATE_PER_MINUTE = 1
RATE_BURST = 30

_client_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


@pytest.fixture(scope="session")
def limited_stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("limited-stack")
    env = stack_env(
        infra,
        data_dir,
        queue_namespace=f"{infra.namespace}-limited",  # its own rate-limit counters and queues
        api_max_body_bytes=str(MAX_BODY_BYTES),
        api_max_import_bytes=str(MAX_IMPORT_BYTES),
        api_rate_limit_per_minute=str(RATE_PER_MINUTE),
        api_rate_limit_burst=str(RATE_BURST),
    )
    running = Stack(env=env, log_dir=data_dir)
    running.start("api")
    yield running
    running.stop()


@pytest.fixture
def tenant(sessions: sessionmaker[Session]) -> Tenant:
    return new_tenant(sessions)


@pytest.fixture
def api(limited_stack: Stack, tenant: Tenant) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=limited_stack.api_url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=30
    ) as http:
        yield http


@pytest.fixture
def anonymous(limited_stack: Stack) -> Iterator[httpx.Client]:
    """A client without a token, from an address no other test uses (the API trusts X-Forwarded-For from
    127.0.0.1, as it would from a reverse proxy there), so its per-address rate is its own."""
    with httpx.Client(
        base_url=limited_stack.api_url, headers={"X-Forwarded-For": next(_client_addresses)}, timeout=30
    ) as http:
        yield http


@pytest.fixture
def blob_dir(limited_stack: Stack) -> Path:
    return Path(limited_stack.env["MAILROOM_BLOB_DIR"])
