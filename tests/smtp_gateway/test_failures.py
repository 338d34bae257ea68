"""What the gateway does when its parts fail: never a `250` for mail it did not keep, never mail lost."""

from __future__ import annotations

import smtplib
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from shared.db import make_engine, make_session_factory, transaction
from shared.models import InboundMessage
from tests.conftest import Infra, Tenant, new_tenant, stack_env
from tests.support.servers import free_port
from tests.support.stack import Stack, make_mail, send, wait_for, wire_bytes


def inbound_rows(sessions: sessionmaker[Session], tenant: Tenant) -> list[InboundMessage]:
    with sessions() as session:
        return list(session.scalars(select(InboundMessage).where(InboundMessage.account_id == tenant.account_id)).all())


def test_with_redis_down_mail_is_accepted_and_arrives_after_the_sweep(
    infra: Infra, scratch_database: str, tmp_path: Path
) -> None:
    # A database of its own: a stack running beside this test must not sweep the message first.
    engine = make_engine(scratch_database)
    sessions = make_session_factory(engine)
    tenant = new_tenant(sessions)
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    env = stack_env(infra, tmp_path, database_url=scratch_database, redis_url=dead_redis)
    gateway = Stack(env=env, log_dir=tmp_path)
    gateway.start("gateway")
    try:
        mail = make_mail(sender=tenant.user_email, to=["kim@client.example"], subject="Redis is down")
        reply = send(gateway.smtp_port, [tenant.bcc_address], mail)
    finally:
        gateway.stop()
    assert reply.startswith("2.0.0 queued as ")
    [row] = inbound_rows(sessions, tenant)
    assert row.status == "received"  # committed, but no queue message reached Redis
    assert "enqueue.failed_left_for_sweep" in gateway_log(tmp_path)  # given up at shutdown, not waited on

    # A worker on a live Redis (its own namespace, so only its start-up sweep can have enqueued it).
    env = stack_env(infra, tmp_path, database_url=scratch_database, queue_namespace=f"{infra.namespace}-sweep")
    worker = Stack(env=env, log_dir=tmp_path)
    worker.start("worker")
    try:
        wait_for(
            lambda: inbound_rows(sessions, tenant)[0].status == "processed", what="the swept message to be processed"
        )
    finally:
        worker.stop()
        engine.dispose()
    assert "sweep.enqueued" in "".join(p.read_text() for p in tmp_path.glob("worker-*.log"))


def gateway_log(directory: Path) -> str:
    return "".join(p.read_text() for p in directory.glob("gateway-*.log"))


def _set_read_only(admin_url: str, database: str, read_only: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        setting = "SET default_transaction_read_only = on" if read_only else "RESET default_transaction_read_only"
        conn.execute(f'ALTER DATABASE "{database}" {setting}')
        # Open connections keep the old setting: end them, so the gateway's pool reconnects under the new one.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )


def test_when_the_database_refuses_writes_data_gets_451_and_nothing_is_kept(
    infra: Infra, scratch_database: str, tmp_path: Path
) -> None:
    engine = make_engine(scratch_database)
    scratch_sessions = make_session_factory(engine)
    tenant = new_tenant(scratch_sessions)
    name = make_url(scratch_database).database
    assert name is not None
    gateway = Stack(env=stack_env(infra, tmp_path, database_url=scratch_database), log_dir=tmp_path)
    gateway.start("gateway")
    try:
        mail = make_mail(sender=tenant.user_email, to=["kim@client.example"], subject="Disk full")
        _set_read_only(infra.admin_url, name, read_only=True)
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as smtp:
            smtp.ehlo("tests.example")
            smtp.mail(tenant.user_email)
            assert smtp.rcpt(tenant.bcc_address) == (250, b"2.1.5 OK")  # reads still work
            assert smtp.data(wire_bytes(mail)) == (451, b"4.3.0 Temporary failure, please try again later")
        engine.dispose()
        assert inbound_rows(scratch_sessions, tenant) == []

        _set_read_only(infra.admin_url, name, read_only=False)
        assert send(gateway.smtp_port, [tenant.bcc_address], mail).startswith("2.0.0 queued as ")
        assert len(inbound_rows(scratch_sessions, tenant)) == 1
    finally:
        gateway.stop()
        engine.dispose()


def test_when_the_database_is_unreachable_rcpt_gets_451(infra: Infra, tenant: Tenant, tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/mailroom"
    gateway = Stack(env=stack_env(infra, tmp_path, database_url=nowhere), log_dir=tmp_path)
    gateway.start("gateway")
    try:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as smtp:
            smtp.ehlo("tests.example")
            smtp.mail(tenant.user_email)
            assert smtp.rcpt(tenant.bcc_address) == (451, b"4.3.0 Temporary failure, please try again later")
    finally:
        gateway.stop()


def test_sigterm_lets_an_open_transaction_finish_then_exits(
    infra: Infra, sessions: sessionmaker[Session], tenant: Tenant, tmp_path: Path
) -> None:
    gateway = Stack(env=stack_env(infra, tmp_path), log_dir=tmp_path)
    gateway.start("gateway")
    process = gateway.processes["gateway"].process
    mail = make_mail(sender=tenant.user_email, to=["kim@client.example"], subject="In flight at shutdown")
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as smtp:
        smtp.ehlo("tests.example")
        smtp.mail(tenant.user_email)
        smtp.rcpt(tenant.bcc_address)
        process.terminate()
        wait_for(lambda: "gateway.draining" in gateway.processes["gateway"].log(), what="the gateway to drain")
        code, reply = smtp.data(wire_bytes(mail))
    assert code == 250, reply
    assert process.wait(timeout=30) == 0
    assert len(inbound_rows(sessions, tenant)) == 1
    with transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage)) >= 1


def test_one_address_cannot_hold_every_session(infra: Infra, tmp_path: Path) -> None:
    gateway = Stack(
        env=stack_env(infra, tmp_path, smtp_max_sessions_per_peer="2", smtp_client_limit_exempt_networks=""),
        log_dir=tmp_path,
    )
    gateway.start("gateway")
    try:
        first = smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30)
        second = smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30)
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30)
        assert refused.value.smtp_code == 421
        assert b"4.7.0" in refused.value.smtp_error
        first.quit()
        # A slot is free again as soon as a session ends.
        wait_for(lambda: _greets(gateway.smtp_port), what="a free session slot")
        second.quit()
    finally:
        gateway.stop()


def _greets(port: int) -> bool:
    try:
        smtplib.SMTP("127.0.0.1", port, timeout=30).quit()
    except smtplib.SMTPConnectError:
        return False
    return True
