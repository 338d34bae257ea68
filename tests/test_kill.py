"""Nothing acknowledged is lost when a process dies without a chance to clean up (kill -9)."""

from __future__ import annotations

import contextlib
import signal
import smtplib
from pathlib import Path

from sqlalchemy import func, select

from shared.db import make_engine, make_session_factory
from shared.models import InboundMessage, Message
from tests.conftest import Infra, new_tenant, stack_env
from tests.support.stack import Stack, make_mail, send, wait_for


def test_every_acknowledged_message_is_processed_after_gateway_and_worker_are_killed(
    infra: Infra, scratch_database: str, tmp_path: Path
) -> None:
    engine = make_engine(scratch_database)
    sessions = make_session_factory(engine)
    tenant = new_tenant(sessions)
    env = stack_env(infra, tmp_path, database_url=scratch_database, queue_namespace=f"{infra.namespace}-kill")
    stack = Stack(env=env, log_dir=tmp_path)
    stack.start("gateway", "worker")
    acknowledged: list[str] = []

    def push(count: int, start: int) -> None:
        for n in range(start, start + count):
            mail = make_mail(
                sender=tenant.user_email, to=[f"c{n}@client.example"], subject=f"Kill {n}", message_id=f"<k{n}@a>"
            )
            # Not acknowledged means the sender keeps it and retries: not ours to count.
            with contextlib.suppress(smtplib.SMTPException, OSError):
                acknowledged.append(send(stack.smtp_port, [tenant.bcc_address], mail))

    try:
        push(15, 0)
        stack.processes["worker"].process.send_signal(signal.SIGKILL)  # mid-work, queue half consumed
        push(15, 15)
        stack.processes["gateway"].process.send_signal(signal.SIGKILL)
        stack.processes["gateway"].process.wait()
        stack.processes["worker"].process.wait()
        stack.processes.clear()

        stack.start("worker")  # its start-up sweep finds what the dead worker left

        def all_processed() -> bool:
            with sessions() as session:
                waiting = session.scalar(
                    select(func.count()).select_from(InboundMessage).where(InboundMessage.status != "processed")
                )
                return waiting == 0

        wait_for(all_processed, timeout=60, what="every accepted message processed")
        with sessions() as session:
            stored = session.scalar(select(func.count()).select_from(Message)) or 0
            accepted = session.scalar(select(func.count()).select_from(InboundMessage)) or 0
        assert len(acknowledged) == 30
        assert accepted == stored == 30
    finally:
        stack.stop()
        engine.dispose()
