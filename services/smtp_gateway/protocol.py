"""aiosmtpd's SMTP protocol with the changes the gateway needs: it admits sessions through the limits (and knows
the open ones, so shutdown can drain them), closes sessions that collect too many errors, and reads DATA in large
chunks instead of line by line.

aiosmtpd reads DATA one line at a time, which at 100 KB per message cost more CPU than everything else the
gateway does. Here the message is read with `readuntil` over whole buffers, then dot-unstuffed as it arrives
(RFC 5321 4.5.2). Only `CRLF . CRLF` ends the data — never a bare `LF . CRLF` — so the gateway cannot be made
to see a different end of message than the sender meant (SMTP smuggling). Long lines are accepted: refusing
real mail for a formatting rule helps nobody here.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, AnyStr, cast

from aiosmtpd.smtp import MISSING, SMTP, syntax

from services.smtp_gateway.limits import TOO_MANY_ERRORS, Anvil, client_of
from shared import metrics

_END_OF_LINE_DOT = b"\n.\r\n"
# The everyday MAIL FROM / RCPT TO path: <dot-atom@dot-atom>, then the parameters (RFC 5321 4.1.2).
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_PLAIN_PATH = re.compile(rf"[ \t]*<({_DOT_ATOM})@({_DOT_ATOM})>(?![ \t]*\()[ \t]*(.*)", re.DOTALL)
TOO_MUCH_DATA = "552 Error: Too much mail data"
IDLE_TOO_LONG = b"421 4.4.2 Timeout, closing connection\r\n"


class GatewaySMTP(SMTP):
    def __init__(self, sessions: set[GatewaySMTP], anvil: Anvil, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sessions = sessions
        self._anvil = anvil
        # The client this session counts against, from admission until it is released (exactly once).
        self._client: str | None = None
        self._errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            # STARTTLS: aiosmtpd calls this again with the encrypted transport. Still the same session, already
            # counted; counting it again refused it at the cap and never released it.
            super().connection_made(transport)
            return
        client = client_of(transport.get_extra_info("peername"))
        refusal = self._anvil.admit_session(client)
        if refusal is not None:
            metrics.smtp_reply("CONNECT", refusal)
            # A 4xx greeting (RFC 5321 3.1) makes the client retry later. uvloop's transports are not
            # asyncio.Transport subclasses, but they are stream transports.
            cast(asyncio.Transport, transport).write(refusal.encode() + b"\r\n")
            transport.close()
            return
        self._client = client
        self._sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._client is None:
            return  # refused at the greeting (or already released): aiosmtpd never set this session up
        self._anvil.release_session(self._client)
        self._client = None
        self._sessions.discard(self)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        # Idle means nothing arrives (Postfix times each read, too): a slow message that keeps coming, line by line
        # or in pieces smaller than a line, is not idle, however long it takes.
        if self._client is not None:
            self._reset_timeout()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        # Say why before closing, as Postfix does; a client that sees only the close may count it as a failure.
        if self.transport is not None and not self.transport.is_closing():
            cast(asyncio.Transport, self.transport).write(IDLE_TOO_LONG)
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd reads every path with the email package's full address grammar, which was a fifth of the
        gateway's CPU per message; the plain form is read with one expression (to the same result), anything else
        (quoted local parts, address literals, comments, the null path, UTF-8) still by aiosmtpd. A path that
        breaks aiosmtpd's parser (it raised IndexError on `a@`, which went to the client as a Python error) is
        malformed."""
        plain = _PLAIN_PATH.fullmatch(arg)
        if plain is None:
            try:
                return super()._getaddr(arg)
            except Exception:
                return None, None  # aiosmtpd answers "553 5.1.3 Error: malformed address"
        local_part, domain, rest = plain.groups()
        if self.local_part_limit and len(local_part) > self.local_part_limit:
            return None, None
        return f"{local_part}@{domain}", rest

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        status = await super()._call_handler_hook(command, *args)
        metrics.smtp_reply(command, status)  # the handler's MAIL, RCPT and DATA answers
        return status

    def close_session(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def push(self, status: AnyStr) -> None:
        if self.transport is None or self.transport.is_closing():
            return  # a command pipelined behind the one that ended the session
        await super().push(status)
        # Like Postfix, a session that keeps failing (guessing addresses, speaking nonsense) is closed.
        if status[:1] in ("4", "5", b"4", b"5"):
            self._errors += 1
            limit = self._anvil.limits.hard_error_limit
            if limit and self._errors >= limit:
                await super().push(TOO_MANY_ERRORS)
                self.close_session()

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


async def read_message(reader: asyncio.StreamReader, size_limit: int | None) -> bytes | None:
    """The dot-unstuffed message up to `CRLF . CRLF`; None (after reading it all) when over `size_limit`.

    Memory stays near twice the message: pieces are unstuffed as they arrive into one growing buffer, copied once
    at the end (unstuffing the whole buffer at the end cost two more copies of a 25 MB message).
    """
    first = await reader.readexactly(1)
    if first == b".":
        second = await reader.readexactly(2)
        if second == b"\r\n":
            return b""  # an empty message: the terminator right after DATA's own CRLF
        first += second
    unstuffed = Unstuffer()
    unstuffed.feed(first)
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
        if not too_big and size_limit and size > size_limit:
            too_big = True
            unstuffed = Unstuffer()  # drop what was kept; the rest is read only to stay in step
        if not too_big:
            unstuffed.feed(piece)
        if piece:
            last_byte = piece[-1]
        if ends:
            break
    return None if too_big else unstuffed.content()


class Unstuffer:
    """Removes the dot a sender put before every line starting with one (RFC 5321 4.5.2), piece by piece.

    The data is read as if preceded by the CRLF that ended the DATA command, so its first line is no exception.
    A CRLF split from its dot by a piece boundary is recognised from the previous piece's last two bytes.
    """

    def __init__(self) -> None:
        # One buffer rather than a list of pieces: freed, a large buffer goes back to the system at once, where
        # thousands of small pieces stay in the heap and keep the process big.
        self._kept = bytearray()
        self._tail = b"\r\n"  # the last two bytes received, before unstuffing

    def feed(self, piece: bytes) -> None:
        unstuffed = piece.replace(b"\r\n.", b"\r\n")
        if self._tail == b"\r\n" and piece.startswith(b"."):
            unstuffed = unstuffed[1:]
        elif self._tail.endswith(b"\r") and piece.startswith(b"\n."):
            unstuffed = unstuffed[:1] + unstuffed[2:]
        self._tail = (self._tail + piece)[-2:] if len(piece) < 2 else piece[-2:]
        self._kept += unstuffed

    def content(self) -> bytes:
        content = bytes(self._kept)
        self._kept = bytearray()
        return content
