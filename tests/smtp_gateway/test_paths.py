"""MAIL FROM and RCPT TO paths: the gateway's quick reading of the plain form gives what aiosmtpd's full grammar
gives, for any path, plain or not; a path that breaks aiosmtpd's parser is malformed, not a server error."""

from __future__ import annotations

from aiosmtpd.smtp import SMTP
from hypothesis import example, given
from hypothesis import strategies as st

from services.smtp_gateway.protocol import GatewaySMTP

_PIECES = st.sampled_from(
    ["a", "Z", "0", "!", "#", "'", "+", "-", "/", "=", "?", "^", "_", "`", "{", "~", ".", "..", " ", "\t", "(",
     ")", '"', "\\", "[", "]", ":", ";", ",", "@", "<", ">", "é", "ü", "xn--bcher-kva", "example", "com"]
)  # fmt: skip
_TEXT = st.lists(_PIECES, max_size=8).map("".join)


def _aiosmtpd_reading(session: GatewaySMTP, path: str) -> tuple[str | None, str | None]:
    try:
        return SMTP._getaddr(session, path)
    except IndexError:  # aiosmtpd's parser fails so on some malformed paths ("a@"); the gateway calls them malformed
        return None, None


def _session(local_part_limit: int) -> GatewaySMTP:
    session = GatewaySMTP.__new__(GatewaySMTP)  # only the parsing is under test: no handler, no transport
    session.local_part_limit = local_part_limit
    return session


@given(
    lead=st.sampled_from(["", " ", "\t"]),
    local=_TEXT,
    domain=_TEXT,
    tail=st.sampled_from(["", " SIZE=2048", "  BODY=8BITMIME", "SIZE=1", " (comment) SIZE=1", " ", ">"]),
    limit=st.sampled_from([0, 3, 64]),
)
@example(lead="", local="sam.seller", domain="bcc.example.com", tail=" SIZE=2048", limit=0)
@example(lead="", local="", domain="", tail="", limit=0)  # the null path, <>
def test_a_path_reads_as_aiosmtpd_reads_it(lead: str, local: str, domain: str, tail: str, limit: int) -> None:
    path = f"{lead}<{local}@{domain}>{tail}" if local or domain else f"{lead}<>{tail}"
    session = _session(limit)
    assert session._getaddr(path) == _aiosmtpd_reading(session, path)


@given(st.text(max_size=40))
@example(path="0@")
def test_anything_reads_as_aiosmtpd_reads_it(path: str) -> None:
    session = _session(64)
    assert session._getaddr(path) == _aiosmtpd_reading(session, path)
