"""Run Mailroom's services as real processes, talk to them over real sockets, and wait for results."""

from __future__ import annotations

import email.policy
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], T | None], *, timeout: float = 20.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def mailroom(args: Iterable[str], env: Mapping[str, str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class ServiceProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, *, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Stack:
    """A set of Mailroom processes sharing one environment (`MAILROOM_*`)."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def smtp_port(self) -> int:
        return int(self.env["MAILROOM_SMTP_PORT"])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.env['MAILROOM_API_PORT']}"

    def start(self, *services: str) -> None:
        for name in services:
            log_path = self.log_dir / f"{name}-{len(self.processes)}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "services.cli", *name.split()],
                    env=self.env,
                    cwd=REPO,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            self.processes[name] = ServiceProcess(name, process, log_path)
        try:
            for name in services:
                self.wait_ready(name)
        except BaseException:
            self.stop(*services)  # a stack that did not come up must not leave processes behind
            raise

    def wait_ready(self, name: str) -> None:
        service = self.processes[name]

        def ready() -> bool:
            if service.process.poll() is not None:
                raise AssertionError(f"{name} exited with {service.process.returncode}:\n{service.log()}")
            if name == "gateway":
                return smtp_greets(self.smtp_port, self.env.get("MAILROOM_SMTP_HOST", "127.0.0.1"))
            if name == "api":
                return api_healthy(self.api_url)
            return "worker.started" in service.log()

        wait_for(ready, timeout=60, what=f"{name} to start")

    def stop(self, *services: str) -> None:
        for name in services or list(self.processes):
            service = self.processes.pop(name, None)
            if service is not None:
                service.stop()


def smtp_greets(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as conn:
            return conn.recv(3) == b"220"
    except OSError:
        return False


def api_healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def base_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILROOM_")}
    # Test mail is not signed and no DNS is reachable: sender authentication is off unless a test turns it on
    # (tests/hostile/ starts its own stack with its own DNS server).
    env.update({"MAILROOM_VERIFY_SENDERS": "false", "MAILROOM_REQUIRE_SENDER_AUTH": "false"})
    env.update({f"MAILROOM_{key.upper()}": value for key, value in settings.items()})
    env["MAILROOM_LOG_FORMAT"] = "json"
    return env


def make_mail(
    *,
    sender: str,
    to: list[str],
    subject: str,
    body: str = "Hello",
    message_id: str | None = None,
    cc: list[str] | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    date: str | None = "Tue, 24 Nov 2026 10:00:00 +0000",
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    if cc:
        mail["Cc"] = ", ".join(cc)
    mail["Subject"] = subject
    if message_id:
        mail["Message-ID"] = message_id
    if in_reply_to:
        mail["In-Reply-To"] = in_reply_to
    if references:
        mail["References"] = " ".join(references)
    if date:
        mail["Date"] = date
    mail.set_content(body)
    for filename, content_type, content in attachments:
        maintype, subtype = content_type.split("/", 1)
        mail.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return mail


def wire_bytes(mail: EmailMessage) -> bytes:
    """The message with CRLF line ends, as SMTP carries it (smtplib sends bytes unchanged)."""
    return mail.as_bytes(policy=email.policy.SMTP)


def send(port: int, recipients: list[str], mail: EmailMessage | bytes, *, sender: str = "sender@example.net") -> str:
    """Send over SMTP and return the `250` reply text; raises on any rejection."""
    raw = mail if isinstance(mail, bytes) else wire_bytes(mail)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("tests.example")
        client.mail(sender)
        for recipient in recipients:
            code, reply = client.rcpt(recipient)
            if code != 250:
                raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        code, reply = client.data(raw)
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        return reply.decode()
