"""Benchmark messages of a chosen size, built once and sent many times with only a few bytes changing.

Small sizes are a plain-text mail; larger ones are a short text plus a base64 attachment, which is what a
100 KB mail in a CRM usually is (a PDF quote, a signature image). That also keeps the API's JSON small, so the
visibility poller measures the pipeline rather than the transfer of bodies.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass, field

CUSTOMER = "customer@example.org"
_LINE = b"The quarterly numbers look good; please send the signed quote by Friday so we can start.\r\n"
_TEXT_BYTES = 1500  # a typical short business mail; the rest of a larger message is the attachment
_BOUNDARY = "=_mailroom-bench-boundary"
_TEXT_HEAD = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"


@dataclass(frozen=True)
class MessageFactory:
    """Wire-ready messages (CRLF, dot-stuffed, ending with `.` CRLF) of about `size` bytes.

    They are what Smart-BCC mostly carries: mail a user sent to a customer, with the gateway's address in Bcc.
    """

    size: int
    run_id: str
    user_address: str
    new_contacts: bool = False  # each message to a customer of its own (mail to prospects), not always the same one
    _shared: tuple[bytes, bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_shared", _shared_parts(max(self.size - len(self._headers(0)), 256)))

    def message_id(self, n: int) -> str:
        return f"bench-{self.run_id}-{n:08d}@bench.mailroom.localhost"

    def parts(self, n: int) -> tuple[bytes, ...]:
        """The message as chunks to write in order; only the small ones are built per message."""
        before, after = self._shared
        if not after:
            return self._headers(n), before
        # Attachments are stored content-addressed, so identical ones would be deduplicated and flatter the
        # matcher: one base64 line per message makes each attachment unique.
        unique = base64.b64encode(f"{self.run_id}:{n:08d}:".encode().ljust(57, b"-")) + b"\r\n"
        return self._headers(n), before, unique, after

    def wire_size(self) -> int:
        return sum(len(part) for part in self.parts(0)) - len(b".\r\n")

    def _headers(self, n: int) -> bytes:
        # Fixed-width numbers, so every message of a run has the same length.
        return (
            f"From: Sam Seller <{self.user_address}>\r\n"
            f"To: Casey Customer <{f'customer-{n:08d}@example.org' if self.new_contacts else CUSTOMER}>\r\n"
            f"Subject: Quote {n:08d}\r\n"
            "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{self.message_id(n)}>\r\n"
            "MIME-Version: 1.0\r\n"
        ).encode()


def _shared_parts(remaining: int) -> tuple[bytes, bytes]:
    if remaining <= 2 * _TEXT_BYTES:
        return _TEXT_HEAD + _text(remaining - len(_TEXT_HEAD)) + b".\r\n", b""
    head = (
        f'Content-Type: multipart/mixed; boundary="{_BOUNDARY}"\r\n\r\n--{_BOUNDARY}\r\n'.encode()
        + _TEXT_HEAD
        + _text(_TEXT_BYTES)
        + f"--{_BOUNDARY}\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="quote.pdf"\r\n\r\n'.encode()
    )
    tail = f"--{_BOUNDARY}--\r\n.\r\n".encode()
    return head, _base64_lines(remaining - len(head) - len(tail) - 78) + tail


def _text(size: int) -> bytes:
    text = (_LINE * (size // len(_LINE) + 1))[:size]
    # Whole lines only; none starts with '.', so nothing needs dot-stuffing.
    return text[: text.rfind(b"\r\n") + 2] if b"\r\n" in text else _LINE


def _base64_lines(size: int) -> bytes:
    # Random content: an attachment that compresses trivially would flatter any server that compresses.
    encoded = base64.b64encode(os.urandom(max(size // 78, 1) * 57))
    # base64 never produces '.', so no line needs dot-stuffing.
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]
