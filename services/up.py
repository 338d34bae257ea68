"""`mailroom up`: the whole system in one command — embedded servers, gateway, matcher workers and API.

Each service runs as its own process, exactly as in production; this supervisor only starts them in order,
says where they listen, and on Ctrl-C / SIGTERM stops the gateway first (no new mail), then the workers and the
API, then the servers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from services.runtime import resolved_servers
from shared.settings import Settings

STOP_TIMEOUT_SECONDS = 45


def run_up(settings: Settings) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
    with resolved_servers(settings) as resolved:
        env = {
            **os.environ,
            "MAILROOM_DATABASE_URL": resolved.require_database_url(),
            "MAILROOM_REDIS_URL": resolved.require_redis_url(),
            "MAILROOM_DATA_DIR": str(resolved.data_dir),
        }
        children = {name: _spawn(name, env) for name in ("gateway", "worker", "api")}
        try:
            if not _wait_until_listening(resolved, children, stop):
                return 1
            _announce(resolved)
            while not stop.wait(0.5):
                dead = [name for name, child in children.items() if child.poll() is not None]
                if dead:
                    print(f"mailroom: {', '.join(dead)} stopped unexpectedly; shutting down", file=sys.stderr)
                    return 1
            print("mailroom: stopping…", file=sys.stderr)
            return 0
        finally:
            _stop_in_order(children)


def _spawn(service: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Own process group: the terminal's Ctrl-C reaches only this supervisor, which stops services in order.
    return subprocess.Popen([sys.executable, "-m", "services.cli", service], env=env, start_new_session=True)


def _wait_until_listening(
    settings: Settings, children: dict[str, subprocess.Popen[bytes]], stop: threading.Event
) -> bool:
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        if any(child.poll() is not None for child in children.values()):
            print("mailroom: a service failed to start; see the log above", file=sys.stderr)
            return False
        if _smtp_ready(settings) and _api_ready(settings):
            return True
        time.sleep(0.2)
    return False


def _smtp_ready(settings: Settings) -> bool:
    try:
        with socket.create_connection((settings.smtp_host, settings.smtp_port), timeout=1) as conn:
            return conn.recv(3) == b"220"
    except OSError:
        return False


def _api_ready(settings: Settings) -> bool:
    try:
        return httpx.get(f"http://{settings.api_host}:{settings.api_port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _announce(settings: Settings) -> None:
    print(
        "\n".join(
            [
                "Mailroom is up.",
                f"  SMTP gateway  smtp://{settings.smtp_host}:{settings.smtp_port}"
                f"  (Smart-BCC domain {settings.bcc_domain})",
                f"  HTTP API      http://{settings.api_host}:{settings.api_port}"
                f"  (docs at /docs, OpenAPI at /openapi.json)",
                f"  Matcher       {settings.worker_processes} worker process(es) × {settings.worker_threads} threads",
                f"  Data          {Path(settings.data_dir)}",
                "Create an account in another terminal: .venv/bin/mailroom accounts create 'Acme'",
                "Press Ctrl-C to stop.",
            ]
        ),
        flush=True,
    )


def _stop_in_order(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for group in (("gateway",), ("worker", "api")):
        for name in group:
            if children[name].poll() is None:
                children[name].send_signal(signal.SIGTERM)
        for name in group:
            try:
                children[name].wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                print(f"mailroom: {name} did not stop in time; killing it", file=sys.stderr)
                children[name].kill()
                children[name].wait()
