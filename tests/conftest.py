"""Shared fixtures: one real Postgres database (migrated with Alembic) and one Redis namespace per xdist worker,
one running production stack (gateway, worker, API as separate processes) per worker, a fresh account per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared import directory
from shared.blobstore import LocalBlobStore
from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import upgrade
from shared.settings import Settings
from tests.support.servers import (
    checkout_database_name,
    database_url,
    free_port,
    postgres_admin_url,
    recreate_database,
    redis_url,
)
from tests.support.stack import Stack, base_env

STACK_MAX_MESSAGE_BYTES = 1024 * 1024


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """xdist's worker id (`gw0`, …), as its own fixture gives it; `master` without xdist (`pytest -p no:xdist`,
    to step through a test in a debugger), where xdist's fixture does not exist."""
    workerinput: dict[str, object] | None = getattr(request.config, "workerinput", None)
    return "master" if workerinput is None else str(workerinput["workerid"])


@dataclass(frozen=True)
class Infra:
    admin_url: str
    database_url: str  # where the running stack works
    quiet_database_url: str  # no service runs here: in-process tests own every row
    redis_url: str
    namespace: str
    work_dir: Path


@dataclass(frozen=True)
class Tenant:
    account_id: uuid.UUID
    token: str
    user_id: uuid.UUID
    user_email: str
    bcc_address: str


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Infra]:
    work_dir = tmp_path_factory.mktemp("infra")
    with postgres_admin_url() as admin_url, redis_url(work_dir) as redis:
        urls = []
        for name in (checkout_database_name(worker_id), checkout_database_name(worker_id, "quiet")):
            recreate_database(admin_url, name)
            urls.append(database_url(admin_url, name))
            upgrade(urls[-1])
        namespace = f"mailroom-test-{worker_id}-{uuid.uuid4().hex[:8]}"
        yield Infra(admin_url, urls[0], urls[1], redis, namespace, work_dir)


@pytest.fixture
def empty_database(infra: Infra, worker_id: str) -> Iterator[str]:
    """A database of this test's own, without a schema, dropped afterwards: for tests that break or rebuild one."""
    name = checkout_database_name(worker_id, "scratch")
    recreate_database(infra.admin_url, name)
    yield database_url(infra.admin_url, name)
    with psycopg.connect(infra.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def scratch_database(empty_database: str) -> str:
    """The same, migrated: no service of the shared stack works there, so a test may kill or break anything."""
    upgrade(empty_database)
    return empty_database


@pytest.fixture(scope="session")
def engine(infra: Infra) -> Iterator[Engine]:
    engine = make_engine(infra.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture(scope="session")
def quiet_sessions(infra: Infra) -> Iterator[sessionmaker[Session]]:
    """Sessions on the database no service process touches (no sweep will pick up what a test leaves)."""
    engine = make_engine(infra.quiet_database_url, pool_size=8)
    yield make_session_factory(engine)
    engine.dispose()


def stack_env(infra: Infra, data_dir: Path, **overrides: str) -> dict[str, str]:
    settings = {
        "database_url": infra.database_url,
        "redis_url": infra.redis_url,
        "queue_namespace": infra.namespace,
        "data_dir": str(data_dir),
        # One blob store for every stack of this run, as in production: a worker of any stack on a database may
        # claim (in its batch) a message that another stack's gateway accepted, and its API must find the files.
        "blob_dir": str(infra.work_dir / "blobs"),
        "smtp_port": str(free_port()),
        "api_port": str(free_port()),
        "max_message_bytes": str(STACK_MAX_MESSAGE_BYTES),
        "worker_processes": "1",
        "worker_threads": "4",
        # Dozens of stacks start in a run: their analysis processes start on demand, not four each up front.
        "analysis_processes_at_start": "0",
        "sweep_interval_seconds": "1",
        "sweep_grace_seconds": "2",
        "smtp_drain_seconds": "5",
        # Tests call the API far faster than a client should; the limiter stays on (tests/hostile/ checks it).
        "api_rate_limit_per_minute": "1000000",
        "api_rate_limit_burst": "100000",
    }
    settings.update(overrides)
    return base_env(**settings)


@pytest.fixture(scope="session")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The production topology: gateway, worker and API as three separate processes."""
    data_dir = tmp_path_factory.mktemp("stack")
    running = Stack(env=stack_env(infra, data_dir), log_dir=data_dir)
    running.start("gateway", "worker", "api")
    yield running
    running.stop()


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> Settings:
    return Settings(
        database_url=infra.database_url,
        redis_url=infra.redis_url,
        queue_namespace=infra.namespace,
        data_dir=tmp_path,
    )


@pytest.fixture
def blobs(stack: Stack) -> LocalBlobStore:
    return LocalBlobStore(Path(stack.env["MAILROOM_BLOB_DIR"]))


def new_tenant(sessions: sessionmaker[Session], bcc_domain: str = "bcc.mailroom.localhost") -> Tenant:
    with transaction(sessions) as session:
        account = directory.create_account(session, f"Test {uuid.uuid4().hex[:6]}")
        email = f"sam.{uuid.uuid4().hex[:6]}@acme.example"
        user = directory.create_user(session, account.account_id, email, "Sam Seller")
        return Tenant(
            account_id=account.account_id,
            token=account.api_token,
            user_id=user.id,
            user_email=user.email,
            bcc_address=directory.bcc_address(user, bcc_domain),
        )


@pytest.fixture
def tenant(sessions: sessionmaker[Session]) -> Tenant:
    return new_tenant(sessions)


@pytest.fixture
def api(stack: Stack, tenant: Tenant) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {tenant.token}"}, timeout=30
    ) as client:
        yield client
