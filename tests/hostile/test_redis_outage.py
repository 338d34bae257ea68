"""Redis goes away while mail arrives: every message gets its 250, and is processed within seconds of Redis coming
back, because the gateway re-sends what it could not enqueue (the sweep, set to once an hour here, cannot be it)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from shared.db import make_engine, make_session_factory
from shared.models import InboundMessage
from tests.conftest import Infra, new_tenant, stack_env
from tests.support.servers import free_port
from tests.support.stack import Stack, make_mail, send, wait_for
from tests.test_kill_redis import start_redis


def test_mail_accepted_while_redis_is_down_is_processed_soon_after_it_returns(
    infra: Infra, scratch_database: str, tmp_path: Path
) -> None:
    engine = make_engine(scratch_database)
    sessions = make_session_factory(engine)
    tenant = new_tenant(sessions)
    port = free_port()
    redis_process = start_redis(port, tmp_path)
    env = stack_env(
        infra,
        tmp_path,
        database_url=scratch_database,
        redis_url=f"redis://127.0.0.1:{port}/0",
        sweep_interval_seconds="3600",
        sweep_grace_seconds="3600",
    )
    stack = Stack(env=env, log_dir=tmp_path)
    stack.start("gateway", "worker")

    def statuses() -> list[str]:
        with sessions() as session:
            return list(
                session.scalars(select(InboundMessage.status).where(InboundMessage.account_id == tenant.account_id))
            )

    try:
        redis_process.kill()
        redis_process.wait()
        for n in range(3):
            mail = make_mail(sender=tenant.user_email, to=[f"r{n}@client.example"], subject=f"During the outage {n}")
            assert send(stack.smtp_port, [tenant.bcc_address], mail).startswith("2.0.0 queued as ")
        wait_for(lambda: "enqueue.failed_retrying" in stack.processes["gateway"].log(), what="the gateway to notice")
        assert statuses() == ["received"] * 3

        redis_process = start_redis(port, tmp_path)
        # A hang detector, not a speed target: anything under the sweep's hour proves the gateway re-sent them.
        wait_for(lambda: statuses() == ["processed"] * 3, timeout=60, what="the messages processed")
        assert "enqueue.recovered" in stack.processes["gateway"].log()
        assert "sweep.enqueued" not in stack.processes["worker"].log()
    finally:
        stack.stop()
        redis_process.kill()
        redis_process.wait()
        engine.dispose()
