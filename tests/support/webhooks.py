"""A webhook receiver as a customer would write it: its own HTTP server on a real socket and its own check of
the signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass
class Receiver:
    url: str = ""
    secret: str = ""
    failures_left: int = 0  # answer 500 this many times first
    received: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, headers: Any, body: bytes) -> bool:
        parts = dict(item.split("=", 1) for item in headers["Mailroom-Signature"].split(","))
        timestamp = int(parts["t"])
        expected = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return abs(time.time() - timestamp) < 300 and hmac.compare_digest(expected, parts["v1"])

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.received if e["type"] == kind]

    def types(self) -> list[str]:
        with self.lock:
            return [e["type"] for e in self.received]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                if state.failures_left > 0:
                    state.failures_left -= 1
                    status = 500
                elif not state.verify(self.headers, body):
                    state.rejected += 1
                    status = 401
                else:
                    state.received.append({**json.loads(body), "_headers": dict(self.headers)})
                    status = 204
            self.send_response(status)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/mailroom"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def subscribe(api: httpx.Client, receiver: Receiver, events: list[str]) -> dict[str, Any]:
    """A subscription of the receiver to `events`; the receiver learns its signing secret."""
    created = api.post("/v1/webhooks", json={"url": receiver.url, "events": events, "description": "CRM sync"})
    assert created.status_code == 201, created.text
    webhook: dict[str, Any] = created.json()
    assert webhook["secret"].startswith("whsec_")
    receiver.secret = webhook["secret"]
    return webhook
