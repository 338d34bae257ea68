"""Long base64 bodies are cut out before the email package parses a message and put back after (`_elided_bodies`).
The tree must be the one the email package builds from the whole message, whatever the bytes around the cut."""

from __future__ import annotations

import base64
import email
import email.message
import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matcher.mail.parsing import _Defects, _elided_bodies, _message_tree, parse_mail

PDF = bytes(range(256)) * 40  # 10 KB, every byte value
LINE = base64.b64encode(PDF[:57])  # one full 76-character base64 line


def base64_lines(content: bytes, newline: bytes) -> bytes:
    return base64.encodebytes(content).replace(b"\n", newline)


def attachment_mail(body: bytes, newline: bytes = b"\r\n", closing: bytes = b"--b--") -> bytes:
    lines = [
        b"From: a@example.com",
        b"Subject: quote",
        b'Content-Type: multipart/mixed; boundary="b"',
        b"",
        b"--b",
        b"Content-Type: text/plain",
        b"",
        b"See the attachment.",
        b"--b",
        b"Content-Type: application/pdf",
        b"Content-Transfer-Encoding: base64",
        b'Content-Disposition: attachment; filename="quote.pdf"',
        b"",
    ]
    return newline.join(lines) + newline + body + closing + newline


def tree(part: email.message.Message) -> dict[str, object]:
    """Everything the parser stored on a part, its children's too."""
    stored = dict(vars(part))
    payload = stored.pop("_payload")
    described: dict[str, object] = {name: repr(value) for name, value in stored.items() if name != "defects"}
    described["defects"] = [type(defect).__name__ for defect in part.defects]
    if isinstance(payload, list):
        described["children"] = [tree(child) for child in payload]
    else:
        described["payload"] = payload
    return described


def assert_parsed_as_whole(data: bytes, *, elided: bool) -> None:
    assert bool(_elided_bodies(data)[1]) is elided
    whole = email.message_from_bytes(data, policy=email.policy.compat32)
    assert tree(_message_tree(data, _Defects())) == tree(whole)


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
def test_an_attachment_reads_the_same_with_its_body_cut_out(newline: bytes) -> None:
    data = attachment_mail(base64_lines(PDF, newline), newline)
    assert_parsed_as_whole(data, elided=True)
    parsed = parse_mail(data)
    assert parsed.attachments[0].content == PDF
    assert parsed.text_body == "See the attachment."


LINES = base64_lines(PDF, b"\r\n").splitlines(keepends=True)  # 180 lines


def with_line_changed(index: int, line: bytes) -> bytes:
    """The attachment's lines with one replaced: after enough lines that those before it are cut out."""
    return b"".join(LINES[:index]) + line + b"".join(LINES[index + 1 :])


@pytest.mark.parametrize(
    "body",
    [
        with_line_changed(100, b"--b\r\n"),  # a delimiter inside the data
        with_line_changed(100, b"--bogus\r\n"),  # a dash line that is none
        with_line_changed(100, b"\r\n"),  # a blank line
        with_line_changed(100, LINE + b"\r"),  # a lone CR ends a line
        with_line_changed(100, LINE + b"\x0c\r\n"),  # so does a form feed
        with_line_changed(100, LINE[:9] + b"MailroomElidedBody0" + LINE[28:] + b"\r\n"),  # our marker, cut out
        (LINE + b"\r\n") * 100,  # nothing but full lines up to the delimiter
        base64_lines(PDF, b"\n") + base64_lines(PDF, b"\r\n"),  # the line ending changes
    ],
    ids=["delimiter", "dash-line", "blank-line", "lone-cr", "form-feed", "marker", "full-lines", "endings"],
)
def test_odd_bytes_in_or_after_the_data_read_the_same(body: bytes) -> None:
    assert_parsed_as_whole(attachment_mail(body), elided=True)


def test_the_marker_text_or_a_dash_where_the_parser_reads_it_turns_the_cut_off() -> None:
    data = attachment_mail(base64_lines(PDF, b"\r\n"), closing=b"--b--\r\nMailroomElidedBody0")
    assert_parsed_as_whole(data, elided=False)
    # A line of the attachment's width that is not base64 leaves the whole run to the parser.
    assert_parsed_as_whole(
        attachment_mail(with_line_changed(100, LINE[:40] + b"-" + LINE[41:] + b"\r\n")), elided=False
    )


@pytest.mark.parametrize("closing", [b"", b"--b", b"--b--\r\n\r\nepilogue"], ids=["none", "no-closing", "epilogue"])
def test_a_missing_or_unusual_end_reads_the_same(closing: bytes) -> None:
    body = base64_lines(PDF, b"\r\n")
    assert_parsed_as_whole(attachment_mail(body, closing=closing), elided=True)
    assert_parsed_as_whole(attachment_mail(body.rstrip(b"\r\n"), closing=b""), elided=True)


def test_bodies_in_nested_parts_and_attached_messages_read_the_same() -> None:
    data = base64_lines(PDF, b"\n")
    inner = b"Subject: inner\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + data
    message = (
        b'Subject: outer\nContent-Type: multipart/mixed; boundary="o"\n\n--o\n'
        b'Content-Type: multipart/related; boundary="i"\n\n--i\nContent-Type: image/png\n'
        b"Content-Transfer-Encoding: base64\n\n" + data + b"--i--\n--o\nContent-Type: message/rfc822\n\n" + inner
    )
    assert_parsed_as_whole(message + b"--o--\n", elided=True)
    assert_parsed_as_whole(message, elided=True)


def test_base64_where_the_parser_expects_no_body_reads_the_same() -> None:
    data = base64_lines(PDF, b"\r\n")
    preamble = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + data + b"--b\r\n\r\nx\r\n--b--\r\n"
    status = b"Content-Type: message/delivery-status\r\n\r\nStatus: 5.0.0\r\n\r\n" + data
    no_boundary = b"Content-Type: multipart/mixed\r\n\r\n" + data
    for message in (preamble, status, no_boundary):
        assert_parsed_as_whole(message, elided=True)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from(
            [LINE, LINE, LINE, LINE[:20], b"", b"--b", b"--b--", b"x: y", b"From x", b"MailroomElidedBody0"]
        ),
        max_size=12,
    ),
    newlines=st.lists(st.sampled_from([b"\r\n", b"\n", b"\r"]), min_size=1, max_size=3),
    at=st.integers(min_value=0, max_value=120),
)
def test_any_lines_around_a_long_body_read_the_same(lines: list[bytes], newlines: list[bytes], at: int) -> None:
    body = [LINE] * 100
    body[at:at] = lines
    data = b"".join(line + newlines[index % len(newlines)] for index, line in enumerate(body))
    message = attachment_mail(data)
    whole = email.message_from_bytes(message, policy=email.policy.compat32)
    assert tree(_message_tree(message, _Defects())) == tree(whole)
