"""The gateway's own DATA reader: exact bytes in, whatever the client's chunking, dots and line lengths."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.smtp_gateway.protocol import Unstuffer, read_message


def stuffed(content: bytes) -> bytes:
    """What an SMTP client sends for `content` (which ends with CRLF or is empty): dots doubled, then CRLF.CRLF."""
    lines = content.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines) + b".\r\n"


async def feed(chunks: list[bytes], size_limit: int | None = None) -> tuple[bytes | None, bytes]:
    reader = asyncio.StreamReader(limit=1001)  # as aiosmtpd configures it: one line
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_data(b"QUIT\r\n")  # a pipelined next command must be left for the session
    reader.feed_eof()
    content = await read_message(reader, size_limit)
    return content, await reader.read()


def run(chunks: list[bytes], size_limit: int | None = None) -> tuple[bytes | None, bytes]:
    return asyncio.run(feed(chunks, size_limit))


def test_an_empty_message() -> None:
    assert run([b".\r\n"]) == (b"", b"QUIT\r\n")


def test_dot_stuffed_lines_are_unstuffed() -> None:
    content = b".starts with a dot\r\nmiddle\r\n..two dots\r\n.\r\n"
    wire = stuffed(b".starts with a dot\r\nmiddle\r\n..two dots\r\n")
    assert run([wire])[0] == content.removesuffix(b".\r\n")


def test_a_bare_lf_dot_does_not_end_the_message() -> None:
    # SMTP smuggling: only CRLF.CRLF ends DATA, so "\n.\r\n" inside is content.
    wire = b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x>\r\n.\r\n"
    content, rest = run([wire])
    assert content == b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@x>\r\n"
    assert rest == b"QUIT\r\n"


def test_very_long_lines_are_accepted() -> None:
    line = b"x" * 50_000 + b"\r\n"
    assert run([line + b".\r\n"])[0] == line


def test_over_the_size_limit_reads_everything_and_says_so() -> None:
    content, rest = run([b"a" * 5000 + b"\r\n.\r\n"], size_limit=1000)
    assert content is None
    assert rest == b"QUIT\r\n"  # the session stays in step


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=30),
    cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=20),
)
def test_any_content_in_any_chunking_comes_back_exactly(lines: list[bytes], cuts: list[int]) -> None:
    content = b"".join(line + b"\r\n" for line in lines)
    wire = stuffed(content)
    chunks, position = [], 0
    for cut in cuts:
        chunks.append(wire[position : position + cut])
        position += cut
    chunks.append(wire[position:])
    assert run([c for c in chunks if c]) == (content, b"QUIT\r\n")


@pytest.mark.parametrize("tail", [b"", b"x"])
def test_a_client_that_disconnects_mid_message_raises(tail: bytes) -> None:
    async def go() -> None:
        reader = asyncio.StreamReader(limit=1001)
        reader.feed_data(b"Subject: cut\r\n" + tail)
        reader.feed_eof()
        await read_message(reader, None)

    with pytest.raises(asyncio.IncompleteReadError):
        asyncio.run(go())


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.lists(st.sampled_from([b".", b"..", b"a"]), max_size=6).map(b"".join), max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=5), max_size=40),
)
def test_dots_are_unstuffed_wherever_the_pieces_are_cut(lines: list[bytes], cuts: list[int]) -> None:
    # Lines full of dots, and pieces that split CRLF from the dot after it, or CR from LF.
    content = b"".join(line + b"\r\n" for line in lines)
    wire = stuffed(content).removesuffix(b".\r\n")
    unstuffer, position = Unstuffer(), 0
    for cut in cuts:
        unstuffer.feed(wire[position : position + cut])
        position += cut
    unstuffer.feed(wire[position:])
    assert unstuffer.content() == content
