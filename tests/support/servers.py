"""Real Postgres and Redis for the tests: the local ones when reachable (CI has them), else embedded ones."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

LOCAL_POSTGRES = os.environ.get("MAILROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOCAL_REDIS = os.environ.get("MAILROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def postgres_admin_url() -> Iterator[str]:
    """A URL of a maintenance database on a real server, where test databases can be created."""
    if reachable("127.0.0.1", 5432):
        yield LOCAL_POSTGRES
        return
    from pgserver.postgres_server import get_server

    root = Path(tempfile.gettempdir()) / f"mailroom-tests-{os.getuid()}"
    root.mkdir(exist_ok=True)
    # xdist workers start together; one of them initializes the cluster, the others attach to it.
    with (root / "postgres.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = get_server(root / "postgres", cleanup_mode="stop")
        fcntl.flock(lock, fcntl.LOCK_UN)
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextlib.contextmanager
def redis_url(work_dir: Path) -> Iterator[str]:
    if reachable("127.0.0.1", 6379):
        yield LOCAL_REDIS
        return
    from shared.embedded import redis_server

    with redis_server(work_dir / "redis") as url:
        yield url


# Several checkouts of the project (worktrees, a CI clone beside a developer's tree) may run their suites at the same
# time against the one local Postgres: each names its databases after its own path.
CHECKOUT_TAG = hashlib.sha256(str(Path(__file__).resolve().parents[2]).encode()).hexdigest()[:6]


def checkout_database_name(worker_id: str, role: str = "") -> str:
    return f"mailroom_test_{CHECKOUT_TAG}_{worker_id}" + (f"_{role}" if role else "")


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_url(admin_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
