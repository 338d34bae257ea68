"""A minimal asyncio SMTP client, and the driver that pushes N messages over C reused connections.

smtplib would need a thread per connection, and on two cores the GIL handoffs cost more than the servers we
measure; this client does one `write` per command and reads replies straight off the stream. No PIPELINING:
aiosmtpd does not offer it, and the comparison should be the same conversation for every server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from bench.mail import MessageFactory

SENDER = "bench-sender@example.net"
MAX_FAILED_OPENS = 20


class SmtpError(Exception):
    def __init__(self, code: int, reply: bytes) -> None:
        super().__init__(f"{code} {reply.decode(errors='replace').strip()}")
        self.code = code
        self.reply = reply


class SmtpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> SmtpConnection:
        # 1 MiB buffer: the default 64 KiB limit would make a large write wait on drain() several times per message.
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        connection = cls(reader, writer)
        await connection._expect(220)
        await connection.command(b"EHLO bench.mailroom.localhost\r\n", 250)
        return connection

    async def command(self, line: bytes, expected: int) -> bytes:
        self._writer.write(line)
        return await self._expect(expected)

    async def send(self, recipient: str, parts: tuple[bytes, ...]) -> bytes:
        """One transaction; returns the final reply text, raises SmtpError on any rejection."""
        await self.command(f"MAIL FROM:<{SENDER}>\r\n".encode(), 250)
        await self.command(f"RCPT TO:<{recipient}>\r\n".encode(), 250)
        await self.command(b"DATA\r\n", 354)
        self._writer.writelines(parts)
        await self._writer.drain()
        return await self._expect(250)

    async def reset(self) -> None:
        await self.command(b"RSET\r\n", 250)

    async def close(self) -> None:
        try:
            await self.command(b"QUIT\r\n", 221)
        except (OSError, SmtpError, asyncio.IncompleteReadError):
            pass  # the server may hang up first; the connection is done either way
        finally:
            self._writer.close()

    async def _expect(self, expected: int) -> bytes:
        reply = b""
        while True:
            line = await self._reader.readuntil(b"\n")
            reply += line
            if line[3:4] != b"-":  # "250-" continues a multi-line reply, "250 " ends it
                break
        code = int(reply[:3])
        if code != expected:
            raise SmtpError(code, reply)
        return reply


@dataclass
class PushResult:
    """What one push achieved, with times from `time.monotonic()`."""

    attempted: int
    started: float
    finished: float = 0.0
    accepted: int = 0
    rejected: dict[int, int] = field(default_factory=dict)  # reply code -> count
    connection_errors: int = 0
    transaction_seconds: list[float] = field(default_factory=list)  # MAIL sent -> 250 received

    @property
    def seconds(self) -> float:
        return max(self.finished - self.started, 1e-9)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds


OnAccepted = Callable[[int, float, bytes], None]


async def push(
    host: str,
    port: int,
    *,
    recipient: str,
    factory: MessageFactory,
    numbers: range,
    concurrency: int,
    per_session: int,
    on_accepted: OnAccepted | None = None,
    rate: float | None = None,
) -> PushResult:
    """Send every message number in `numbers` over `concurrency` connections, `per_session` per connection.

    With `rate`, message k (counting from 0) starts no earlier than k / rate seconds after the first: a steady
    arrival rate instead of a burst, as long as the connections keep up with it."""
    result = PushResult(attempted=len(numbers), started=time.monotonic())
    pending = iter(numbers)  # shared by all senders; the event loop makes next() atomic here

    async def paced(number: int) -> None:
        if rate is not None:
            await asyncio.sleep(max(0.0, result.started + (number - numbers.start) / rate - time.monotonic()))

    senders = [
        _sender(host, port, recipient, factory, pending, per_session, result, on_accepted, paced)
        for _ in range(concurrency)
    ]
    await asyncio.gather(*senders)
    result.finished = time.monotonic()
    return result


async def _sender(
    host: str,
    port: int,
    recipient: str,
    factory: MessageFactory,
    pending: Iterator[int],
    per_session: int,
    result: PushResult,
    on_accepted: OnAccepted | None,
    paced: Callable[[int], Awaitable[None]],
) -> None:
    exhausted = False
    failed_opens = 0
    while not exhausted:
        try:
            connection = await SmtpConnection.open(host, port)
        except (OSError, SmtpError, asyncio.IncompleteReadError):
            result.connection_errors += 1
            failed_opens += 1
            if failed_opens >= MAX_FAILED_OPENS:
                raise
            await asyncio.sleep(0.1)  # a refusing server must not turn this into a busy loop
            continue
        failed_opens = 0
        try:
            for _ in range(per_session):
                number = next(pending, None)
                if number is None:
                    exhausted = True
                    break
                parts = factory.parts(number)
                await paced(number)
                try:
                    mail_sent = time.monotonic()
                    reply = await connection.send(recipient, parts)
                except SmtpError as exc:
                    result.rejected[exc.code] = result.rejected.get(exc.code, 0) + 1
                    await connection.reset()
                    continue
                accepted_at = time.monotonic()
                result.accepted += 1
                result.transaction_seconds.append(accepted_at - mail_sent)
                if on_accepted is not None:
                    on_accepted(number, accepted_at, reply)
        except (OSError, SmtpError, asyncio.IncompleteReadError):
            # The message in flight is lost to this run (counted as neither accepted nor rejected).
            result.connection_errors += 1
        finally:
            await connection.close()
