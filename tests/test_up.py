"""`mailroom up` on the embedded default: one command runs everything; data survives a restart."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port
from tests.support.stack import REPO, base_env, mailroom, make_mail, send, wait_for


def start_up(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )


def stop_up(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=90)


def test_up_runs_everything_on_embedded_servers_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    # No database or Redis URL: `up` must start its own under the data directory.
    env = base_env(
        data_dir=str(tmp_path / "data"),
        smtp_port=str(free_port()),
        api_port=str(free_port()),
        worker_processes="1",
        worker_threads="2",
    )
    log = tmp_path / "up.log"
    up = start_up(env, log)
    try:
        wait_for(lambda: "Mailroom is up." in log.read_text(errors="replace"), timeout=120, what="mailroom up")
        banner = log.read_text(errors="replace")
        assert f"smtp://127.0.0.1:{env['MAILROOM_SMTP_PORT']}" in banner
        assert f"http://127.0.0.1:{env['MAILROOM_API_PORT']}" in banner

        # Admin commands beside a running `up` reach the same embedded database.
        created = mailroom(["accounts", "create", "Acme"], env)
        assert created.returncode == 0, created.stderr
        account = json.loads(created.stdout)
        user_run = mailroom(["users", "create", account["account_id"], "Sam@Acme.example", "--name", "Sam"], env)
        assert user_run.returncode == 0, user_run.stderr
        user = json.loads(user_run.stdout)
        local_part, domain = user["bcc_address"].split("@")
        assert domain == "bcc.mailroom.localhost"
        assert len(local_part) >= 13  # ≥ 60 random bits

        mail = make_mail(
            sender="Sam <sam@acme.example>",
            to=["Dana Client <dana@client.example>"],
            subject="Hello from up",
            attachments=[("notes.txt", "text/plain", b"some notes\n")],
        )
        send(int(env["MAILROOM_SMTP_PORT"]), [user["bcc_address"]], mail)
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{env['MAILROOM_API_PORT']}",
            headers={"Authorization": f"Bearer {account['api_token']}"},
        )
        [message] = wait_for(lambda: api.get("/v1/messages").json()["data"], what="the message in the API")
        assert message["subject"] == "Hello from up"
        [attachment] = message["attachments"]
        assert api.get(f"/v1/attachments/{attachment['id']}/content").content == b"some notes\n"
    finally:
        assert stop_up(up) == 0

    # Everything is down: the API port is free again.
    assert not _answers(f"http://127.0.0.1:{env['MAILROOM_API_PORT']}/healthz")

    up = start_up(env, log)
    try:
        wait_for(lambda: log.read_text(errors="replace").count("Mailroom is up.") == 2, timeout=120, what="restart")
        messages = api.get("/v1/messages").json()["data"]
        assert [m["id"] for m in messages] == [message["id"]]
        assert api.get(f"/v1/attachments/{attachment['id']}/content").content == b"some notes\n"
    finally:
        assert stop_up(up) == 0


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def test_embedded_postgres_killed_mid_run_loses_no_acknowledged_mail(tmp_path: Path) -> None:
    env = base_env(
        data_dir=str(tmp_path / "data"),
        smtp_port=str(free_port()),
        api_port=str(free_port()),
        worker_processes="1",
        worker_threads="2",
    )
    log = tmp_path / "up.log"
    up = start_up(env, log)
    try:
        wait_for(lambda: "Mailroom is up." in log.read_text(errors="replace"), timeout=120, what="mailroom up")
        account = json.loads(mailroom(["accounts", "create", "Crash"], env).stdout)
        user = json.loads(mailroom(["users", "create", account["account_id"], "sam@crash.example"], env).stdout)
        port = int(env["MAILROOM_SMTP_PORT"])
        for n in range(10):
            send(
                port,
                [user["bcc_address"]],
                make_mail(sender="sam@crash.example", to=[f"c{n}@x.example"], subject=f"{n}"),
            )
        # kill -9 the embedded Postgres: whatever got a 250 was committed, whatever did not must be refused.
        postmaster = int((tmp_path / "data" / "postgres" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        late = make_mail(sender="sam@crash.example", to=["late@x.example"], subject="late")
        with pytest.raises(smtplib.SMTPException, match=r"4\.3\.0"):
            send(port, [user["bcc_address"]], late)
    finally:
        stop_up(up)

    up = start_up(env, log)  # crash recovery of the embedded server, then everything as before
    try:
        wait_for(lambda: log.read_text(errors="replace").count("Mailroom is up.") == 2, timeout=120, what="restart")
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{env['MAILROOM_API_PORT']}",
            headers={"Authorization": f"Bearer {account['api_token']}"},
        )

        def all_ten() -> list[dict[str, object]] | None:
            # Those claimed before the kill wait for their claim to lapse: poll gently (the API limits rates).
            time.sleep(0.5)
            data: list[dict[str, object]] = api.get("/v1/messages", params={"limit": 50}).json()["data"]
            return data if len(data) >= 10 else None

        messages = wait_for(all_ten, timeout=60, what="the ten acknowledged messages")
        assert sorted(m["subject"] for m in messages) == [str(n) for n in range(10)]
    finally:
        assert stop_up(up) == 0
