"""aiosmtpd's SMTP protocol with two changes the gateway needs: it knows its open sessions (so shutdown can
drain them), and it reads DATA in large chunks instead of line by line.

aiosmtpd reads DATA one line at a time, which at 100 KB per message cost more CPU than everything else the
gateway does. Here the message is read with `readuntil` over whole buffers, then dot-unstuffed in one pass
(RFC 5321 4.5.2). Only `CRLF . CRLF` ends the data — never a bare `LF . CRLF` — so the gateway cannot be made
to see a different end of message than the sender meant (SMTP smuggling). Long lines are accepted: refusing
real mail for a formatting rule helps nobody here.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiosmtpd.smtp import MISSING, SMTP, syntax

from shared import metrics

_END_OF_LINE_DOT = b"\n.\r\n"
TOO_MUCH_DATA = "552 Error: Too much mail data"


TOO_MANY_SESSIONS = b"421 4.7.0 Too many connections from your address, please try again later\r\n"


class GatewaySMTP(SMTP):
    def __init__(self, sessions: set[GatewaySMTP], *args: Any, max_sessions_per_peer: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sessions = sessions
        self._max_sessions_per_peer = max_sessions_per_peer
        self._refused = False
        self.peer_host: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # One address holding every session would starve all other senders: past the cap, a 4xx greeting (RFC
        # 5321 3.1) makes it retry later instead. Counting the open sessions is cheap at these numbers.
        peer = _host(transport.get_extra_info("peername"))
        if self._max_sessions_per_peer and peer is not None:
            open_here = sum(1 for session in self._sessions if session.peer_host == peer)
            if open_here >= self._max_sessions_per_peer:
                self._refused = True
                metrics.smtp_reply("CONNECT", TOO_MANY_SESSIONS.decode())
                # uvloop's transports are not asyncio.Transport subclasses, but they are stream transports.
                cast(asyncio.Transport, transport).write(TOO_MANY_SESSIONS)
                transport.close()
                return
        self.peer_host = peer
        self._sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._sessions.discard(self)
        super().connection_lost(error)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        status = await super()._call_handler_hook(command, *args)
        metrics.smtp_reply(command, status)  # the handler's MAIL, RCPT and DATA answers
        return status

    def close_session(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 -- aiosmtpd dispatches on this name
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content = await read_message(self._reader, self.data_size_limit)
        except asyncio.IncompleteReadError:
            # The client went away mid-message: nothing was accepted, so nothing is kept.
            self.close_session()
            return
        if content is None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            metrics.smtp_reply("DATA", TOO_MUCH_DATA)
            await self.push(TOO_MUCH_DATA)
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)


def _host(peername: object) -> str | None:
    return str(peername[0]) if isinstance(peername, tuple) and peername else None


async def read_message(reader: asyncio.StreamReader, size_limit: int | None) -> bytes | None:
    """The dot-unstuffed message up to `CRLF . CRLF`; None (after reading it all) when over `size_limit`."""
    first = await reader.readexactly(1)
    if first == b".":
        second = await reader.readexactly(2)
        if second == b"\r\n":
            return b""  # an empty message: the terminator right after DATA's own CRLF
        first += second
    kept = bytearray(first)
    size = len(first)
    too_big = False
    last_byte = first[-1]
    while True:
        try:
            piece = await reader.readuntil(_END_OF_LINE_DOT)
        except asyncio.LimitOverrunError as overrun:
            # No end in what is buffered (the reader's limit is one line): take what can't hold the start of one.
            piece = await reader.readexactly(overrun.consumed)
            ends = False
        else:
            before = piece[-5] if len(piece) >= 5 else last_byte
            ends = before == ord("\r")
            if ends:
                piece = piece[:-3]  # drop ".\r\n", keep the last line's CRLF
        size += len(piece)
        too_big = too_big or (size_limit is not None and size_limit > 0 and size > size_limit)
        if not too_big:
            kept += piece
        if piece:
            last_byte = piece[-1]
        if ends:
            break
    if too_big:
        return None
    if kept.startswith(b"."):
        del kept[0]
    return bytes(kept.replace(b"\r\n.", b"\r\n"))
