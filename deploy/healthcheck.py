"""Container health for every Mailroom role, from one image: `python /opt/mailroom/healthcheck.py`.

Docker's HEALTHCHECK belongs to the image, but the image runs four different commands, so this finds which one
this container runs and asks the question that fits it. Standard library only: it runs every few seconds.
Exit 0 healthy, 1 unhealthy.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path

ROLES = ("gateway", "worker", "api", "migrate", "up")


def main() -> int:
    found = _running_role()
    if found is None:
        print("no mailroom process found", file=sys.stderr)
        return 1
    pid, role = found
    if role == "gateway":
        return _smtp_greets(int(os.environ.get("MAILROOM_SMTP_PORT", "2525")))
    if role == "api":
        return _http_ok(f"http://127.0.0.1:{os.environ.get('MAILROOM_API_PORT', '8025')}/healthz")
    if role == "worker":
        return _workers_alive(pid, int(os.environ.get("MAILROOM_WORKER_PROCESSES", "2")))
    return 0  # one-shot commands are healthy for as long as they run


def _running_role() -> tuple[int, str] | None:
    # PID 1 is `mailroom` itself, or an init (docker run --init, compose `init: true`) with `mailroom` below it.
    for entry in sorted(Path("/proc").iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else 1 << 30):
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [arg.decode(errors="replace") for arg in argv if arg]
        for i, word in enumerate(words[:-1]):
            if word.endswith("/mailroom") or word == "mailroom":
                role = words[i + 1]
                return (int(entry.name), role) if role in ROLES else None
    return None


def _smtp_greets(port: int) -> int:
    # A greeting (not just an accepted connection) shows the event loop is answering.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            greeting = conn.recv(3)
            conn.sendall(b"QUIT\r\n")
            return 0 if greeting == b"220" else 1
    except OSError:
        return 1


def _http_ok(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 -- a fixed loopback http URL
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


def _workers_alive(pid: int, processes: int) -> int:
    if processes <= 1:
        return 0  # one process runs the actors itself; it is alive if it is running
    # `mailroom worker` supervises its worker processes and keeps waiting if one dies: count them. Its other
    # child, multiprocessing's resource tracker, does not count.
    try:
        children = (Path("/proc") / str(pid) / "task" / str(pid) / "children").read_text().split()
    except OSError:
        return 1
    workers = 0
    for child in children:
        try:
            workers += b"spawn_main" in (Path("/proc") / child / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
    return 0 if workers >= processes else 1


if __name__ == "__main__":
    sys.exit(main())
