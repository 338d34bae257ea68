"""Reference SMTP servers that store nothing, run as `python -m bench.sink {raw,aiosmtpd} PORT`.

`aiosmtpd` is the gateway minus durability: the same library, event loop (uvloop) and options, with a DATA hook
that answers 250 at once. `raw` is a few lines of protocol that only answer; it shows how fast the bench's client
can go, so a reference close to it means the client, not the server, set the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any, cast

import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_MESSAGE_BYTES = 25 * 1024 * 1024


class _AcceptEverything:
    async def handle_DATA(  # noqa: N802 -- aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        return "250 2.0.0 OK"


class _RawSmtp(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._buffer += data
        while True:
            if self._in_data:
                end = self._buffer.find(b"\r\n.\r\n")
                if end < 0:
                    # Keep only what could still be the start of the terminator.
                    self._buffer = self._buffer[-4:]
                    return
                self._buffer = self._buffer[end + 5 :]
                self._in_data = False
                self._transport.write(b"250 2.0.0 OK\r\n")
                continue
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            verb = self._buffer[:4].upper()
            self._buffer = self._buffer[end + 2 :]
            if verb == b"EHLO":
                self._transport.write(b"250-sink\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self._in_data = True
                # The terminator search starts at the CRLF that ends the DATA line.
                self._buffer = b"\r\n" + self._buffer
                self._transport.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                self._transport.write(b"221 2.0.0 Bye\r\n")
                self._transport.close()
                return
            else:
                self._transport.write(b"250 2.0.0 OK\r\n")


async def serve(kind: str, port: int) -> None:
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        if kind == "raw":
            return _RawSmtp()
        return SMTP(
            _AcceptEverything(),
            hostname="sink.localhost",
            ident="bench sink",
            data_size_limit=MAX_MESSAGE_BYTES,
            enable_SMTPUTF8=True,
            decode_data=False,
        )

    server = await loop.create_server(factory, "127.0.0.1", port)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("kind", choices=["raw", "aiosmtpd"])
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.kind, args.port))


if __name__ == "__main__":
    main()
