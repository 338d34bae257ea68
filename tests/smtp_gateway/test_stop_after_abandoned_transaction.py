"""A client that gave up on its transaction (a refused RCPT, then QUIT) must not hold a stopping gateway for the
whole drain period: found by deploy/smoke.sh, where every such session cost a rolling restart 30 s."""

from __future__ import annotations

import smtplib
from pathlib import Path

from tests.conftest import Infra, stack_env
from tests.support.stack import Stack


def test_a_transaction_its_client_abandoned_does_not_hold_up_shutdown(infra: Infra, tmp_path: Path) -> None:
    gateway = Stack(env=stack_env(infra, tmp_path, smtp_drain_seconds="600"), log_dir=tmp_path)
    gateway.start("gateway")
    process = gateway.processes["gateway"].process
    try:
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=30) as smtp:
            smtp.ehlo("tests.example")
            smtp.mail("someone@example.net")
            assert smtp.rcpt("nobody-here@bcc.mailroom.localhost")[0] == 550
        process.terminate()
        # A hang detector, not a speed target: waiting out the 600 s drain would fail here.
        assert process.wait(timeout=120) == 0
        assert "gateway.stopped" in gateway.processes["gateway"].log()
    finally:
        gateway.stop()
