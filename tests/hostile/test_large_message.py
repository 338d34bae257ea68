"""A 25 MB message over real SMTP: stored byte for byte, with the gateway's memory a small multiple of it."""

from __future__ import annotations

import hashlib
import os
import smtplib
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.models import InboundMessage
from tests.conftest import Tenant
from tests.hostile.conftest import extra_gateway, new_client_address, ordinary_mail_arrives
from tests.support.stack import Stack, make_mail, wait_for, wire_bytes

MESSAGE_BYTES = 25 * 1024 * 1024


def memory_kib(pid: int) -> dict[str, int]:
    """Resident memory now (VmRSS) and at its peak so far (VmHWM), from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def test_a_25_mb_message_is_stored_exactly_with_bounded_memory(
    hostile: Stack, tenant: Tenant, hostile_api: httpx.Client, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    gateway = extra_gateway(hostile, tmp_path, max_message_bytes=str(MESSAGE_BYTES + 1024 * 1024))
    try:
        pid = gateway.processes["gateway"].process.pid
        # Incompressible, so neither the database nor anything else can make it small.
        attachment = os.urandom(int(MESSAGE_BYTES / 1.37))  # base64 in 76-character lines
        mail = make_mail(
            sender=tenant.user_email,
            to=["kim@client.example"],
            subject="Big one",
            attachments=[("big.bin", "application/octet-stream", attachment)],
        )
        raw = wire_bytes(mail)
        assert MESSAGE_BYTES - 256 * 1024 < len(raw) <= MESSAGE_BYTES
        before = memory_kib(pid)
        started = time.monotonic()
        with smtplib.SMTP(
            "127.0.0.1", gateway.smtp_port, timeout=120, source_address=(new_client_address(), 0)
        ) as smtp:
            smtp.ehlo("big.example")
            smtp.mail(tenant.user_email, options=[f"SIZE={len(raw)}"])
            smtp.rcpt(tenant.bcc_address)
            code, reply = smtp.data(raw)
        assert code == 250, reply
        elapsed = time.monotonic() - started
        after = memory_kib(pid)
        growth = (after["VmHWM"] - before["VmRSS"]) * 1024
        print(f"{len(raw):,} bytes in {elapsed:.1f} s; gateway memory (KiB): {before} before, {after} after;")
        print(f"peak growth {growth / len(raw):.1f}x the message")
        assert growth < 10 * len(raw)

        with sessions() as session:
            stored = session.execute(
                select(func.sha256(InboundMessage.raw), InboundMessage.size, InboundMessage.status).where(
                    InboundMessage.account_id == tenant.account_id
                )
            ).one()
        assert stored[0] == hashlib.sha256(raw).digest()
        assert stored[1] == len(raw)
        assert stored[2] != "failed"
        ordinary_mail_arrives(hostile, tenant, hostile_api, port=gateway.smtp_port)
        # The big one is processed too (or held with a reason), never failed.
        settled = wait_for(
            lambda: _status(sessions, tenant) in {"processed", "held", "failed"} and _status(sessions, tenant),
            timeout=180,
            what="the 25 MB message processed",
        )
        assert settled in {"processed", "held"}
    finally:
        gateway.stop()


def _status(sessions: sessionmaker[Session], tenant: Tenant) -> str:
    with sessions() as session:
        return session.scalars(
            select(InboundMessage.status).where(
                InboundMessage.account_id == tenant.account_id, InboundMessage.size > MESSAGE_BYTES // 2
            )
        ).one()
