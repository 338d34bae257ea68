"""`parse_mail` on small hand-written messages, one robustness case each. No database, no corpus."""

from __future__ import annotations

import base64
import binascii
import hashlib

import pytest

from services.matcher.mail.parsing import MAX_ATTACHMENTS, Address, parse_address_header, parse_mail

PNG = bytes(range(256)) * 3  # every byte value: any text decoding on the way would show


def mail(headers: str, body: bytes | str = b"Hello\n") -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return headers.strip("\n").encode("latin-1") + b"\n\n" + data


# --- headers ---------------------------------------------------------------------------------------------------


def test_encoded_words_in_several_charsets_are_joined_without_the_space_between_them() -> None:
    parsed = parse_mail(
        mail(
            "From: =?Windows-1252?Q?Hans_B=C4KO?= =?iso-8859-15?q?Sch=F6nland?= <me@example.com>\n"
            "Subject: utf8: =?UTF-8?Q?=E4=BD=BF=E3=81=A3=E3=81=A6?= / =?windows-1251?B?0eXw4+XpINPj6+j26uj1?="
        )
    )
    assert parsed.sender == Address("Hans BÄKOSchönland", "me@example.com")
    assert parsed.subject == "utf8: 使って / Сергей Углицких"


def test_a_character_split_across_two_encoded_words_is_decoded_whole() -> None:
    encoded = "€uro".encode()
    first = base64.b64encode(encoded[:2]).decode()
    second = base64.b64encode(encoded[2:]).decode()
    parsed = parse_mail(mail(f"Subject: =?utf-8?B?{first}?= =?utf-8?B?{second}?="))
    assert parsed.subject == "€uro"


def test_broken_encoded_word_with_spaces_and_a_utf7_alias_is_still_decoded() -> None:
    parsed = parse_mail(
        mail("Subject: Benachrichtung\n\tzum\n\t=?unicode-1-1-utf-7?Q?+ANw-bermittlungsstatus  \n\t(Fehlgeschlagen)?=")
    )
    assert parsed.subject == "Benachrichtung zum Übermittlungsstatus (Fehlgeschlagen)"


def test_windows_874_is_read_as_thai() -> None:
    thai = "ภาษาไทย".encode("cp874")
    parsed = parse_mail(
        mail(
            f"Subject: =?windows-874?B?{base64.b64encode(thai).decode()}?=\n"
            "Content-Type: text/plain; charset=windows-874",
            thai,
        )
    )
    assert parsed.subject == "ภาษาไทย"
    assert parsed.text_body == "ภาษาไทย"
    assert parsed.defects == ()


def test_unknown_charset_falls_back_and_says_so() -> None:
    parsed = parse_mail(
        mail("Subject: =?x-made-up?Q?Gr=FC=DFe?=\nContent-Type: text/plain; charset=x-made-up", "Grüße".encode())
    )
    assert parsed.subject == "Grüße"  # not UTF-8, so windows-1252
    assert parsed.text_body == "Grüße"  # valid UTF-8
    assert any("unknown charset 'x-made-up'" in defect for defect in parsed.defects)


def test_charset_names_of_raw_8bit_bytes_are_unknown_charsets_not_an_unparsable_message() -> None:
    # "\xe9" is one raw byte in the header ("mail" encodes it as Latin-1): the charset lookup cannot even take it.
    parsed = parse_mail(
        mail(
            "From: Ann <ann@example.com>\nMessage-ID: <charset-8bit@example.com>\n"
            "Subject: Hello =?\xe9?Q?Gr=FC=DFe?= world\nContent-Type: text/plain; charset=\xe9\xe9",
            "Grüße".encode(),
        )
    )
    assert parsed.sender == Address("Ann", "ann@example.com")
    assert parsed.message_id == "charset-8bit@example.com"
    assert parsed.subject == "Hello Grüße world"  # the word's bytes guessed, as for any unknown charset
    assert parsed.text_body == "Grüße"
    assert "Subject: unknown charset 'é'; read as windows-1252" in parsed.defects


@pytest.mark.parametrize(
    ("header", "body", "text", "files"),
    [
        ("Subject: Hello =?a\x00b?Q?x?= world", "body", "body", []),
        ("Content-Type: text/plain; charset=a\x00b", "body", "body", []),
        # RFC 2231 parameters name a charset of their own, which the email package looks up (catching LookupError).
        ("Content-Type: text/plain; charset*=\xe9''utf-8", "caf\xe9", "café", []),
        (
            "Content-Type: multipart/mixed; boundary*=a\x00b''b",
            "--b\nContent-Type: text/plain\n\nbody\n--b--\n",
            "body",
            [],
        ),
        (
            "Content-Type: multipart/mixed; boundary=b",
            "--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename*=a\x00b''x.pdf\n\n%PDF\n"
            "--b--\n",
            None,
            ["x.pdf"],
        ),
    ],
)
def test_impossible_charset_names_cost_no_headers(header: str, body: str, text: str | None, files: list[str]) -> None:
    parsed = parse_mail(
        mail(f"From: ann@example.com\nMessage-ID: <impossible@example.com>\n{header}", body.encode("latin-1"))
    )
    assert parsed.sender == Address(None, "ann@example.com")
    assert parsed.message_id == "impossible@example.com"
    assert parsed.text_body == text
    assert [attachment.filename for attachment in parsed.attachments] == files


def test_raw_8bit_header_bytes_use_the_charset_the_message_declares() -> None:
    subject = "转发：整体提升".encode("gb2312")
    raw = b"Subject: " + subject + b"\nContent-Type: text/plain; charset=gb2312\n\n" + "你好".encode("gb2312")
    parsed = parse_mail(raw)
    assert parsed.subject == "转发：整体提升"
    assert parsed.text_body == "你好"


def test_iso_2022_jp_header_and_body() -> None:
    jis = "メルマガ解除".encode("iso2022_jp")
    raw = (
        b"From: =?ISO-2022-JP?B?" + base64.b64encode("岡本和正".encode("iso2022_jp")) + b"?= <mail@example.jp>\n"
        b"Subject: =?ISO-2022-JP?B?" + base64.b64encode(jis) + b"?=\n"
        b"Content-Type: text/plain; charset=ISO-2022-JP\n\n" + jis
    )
    parsed = parse_mail(raw)
    assert parsed.subject == "メルマガ解除"
    assert parsed.sender == Address("岡本和正", "mail@example.jp")
    assert parsed.text_body == "メルマガ解除"


def test_shift_jis_bytes_labelled_iso_2022_jp_are_read_as_shift_jis() -> None:
    name = base64.b64encode("駅北口".encode("cp932")).decode()
    parsed = parse_mail(mail(f"To: =?ISO-2022-JP?B?{name}?= <foo@example.com>"))
    assert parsed.to == (Address("駅北口", "foo@example.com"),)


def test_subject_is_unfolded() -> None:
    parsed = parse_mail(mail("Subject: a long\n  subject\r\n\tfolded\nFrom: a@example.com"))
    assert parsed.subject == "a long subject folded"


# --- addresses -------------------------------------------------------------------------------------------------


def test_last_first_display_names_are_kept_as_sent() -> None:
    parsed = parse_mail(
        mail(
            'From: "Müller, Bernd" <Bernd.Mueller@example.com>\n'
            'Cc: "Test, Karl-Heinz" <kh@example.com>, Smith, Karoline <  karoline@example.com >\n'
            "To: =?iso-8859-1?Q?B=FCrling,=20Andreas?= <smith@example.com>"
        )
    )
    assert parsed.sender == Address("Müller, Bernd", "Bernd.Mueller@example.com")
    assert parsed.cc == (
        Address("Test, Karl-Heinz", "kh@example.com"),
        Address("Smith, Karoline", "karoline@example.com"),
    )
    assert parsed.to == (Address("Bürling, Andreas", "smith@example.com"),)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("marc@example.com (Marc Smith)", (Address("Marc Smith", "marc@example.com"),)),
        ("=?iso-8859-2?Q?Namedy=F1ski?= (hans@example.com)", (Address("Namedyński", "hans@example.com"),)),
        ("Max Kohl | [example.com] <kohl@example.com>", (Address("Max Kohl | [example.com]", "kohl@example.com"),)),
        ("undisclosed-recipients:;", ()),
        ('"Lottery"@example.com>', (Address(None, '"Lottery"@example.com'),)),
        (
            "a@example.com, group: b@example.com, c@example.com;",
            tuple(Address(None, f"{x}@example.com") for x in "abc"),
        ),
        ('"A" <>, "LTD" <ly@example.com>', (Address("LTD", "ly@example.com"),)),
    ],
)
def test_address_headers_in_the_wild(header: str, expected: tuple[Address, ...]) -> None:
    assert parse_address_header(header) == expected


def test_sender_falls_back_to_reply_to_when_from_has_no_address() -> None:
    parsed = parse_mail(mail('From: "Me" <>\nReply-To: <real@example.com>'))
    assert parsed.sender == Address(None, "real@example.com")
    assert any("Reply-To" in defect for defect in parsed.defects)


def test_the_first_from_header_with_an_address_wins() -> None:
    parsed = parse_mail(mail("From: [??????]\nFrom: Real <real@example.com>"))
    assert parsed.sender == Address("Real", "real@example.com")


# --- structure -------------------------------------------------------------------------------------------------


def test_mbox_from_line_is_not_taken_for_the_body() -> None:
    parsed = parse_mail(
        b"From someone@example.com Wed Apr 19 20:56:33 2017\nSubject: hi\nFrom: a@example.com\n\nBody\n"
    )
    assert parsed.subject == "hi"
    assert parsed.text_body == "Body\n"


def test_header_lines_that_are_not_fields_are_skipped() -> None:
    raw = (
        b"---- Original email message ----\n"
        b"X-Tracker: abc\nIg5drOCwmrVzP5sDoseXbDeYAxijWzLyk\n"
        b"From: a@example.com\nTo: b@example.com\nSubject: Contact\n\nBody\n"
    )
    parsed = parse_mail(raw)
    assert (parsed.subject, parsed.sender, parsed.text_body) == ("Contact", Address(None, "a@example.com"), "Body\n")
    assert parsed.defects


def test_missing_header_body_separator_keeps_the_body() -> None:
    parsed = parse_mail(b"Subject: no separator\nThis line starts the body\nand this too\n")
    assert parsed.subject == "no separator"
    assert parsed.text_body is not None
    assert "This line starts the body" in parsed.text_body
    assert any("no blank line" in defect for defect in parsed.defects)


def test_very_long_lines_survive() -> None:
    line = "x" * 200_000
    parsed = parse_mail(mail("Subject: long", line + "\n"))
    assert parsed.text_body == line + "\n"


def test_prefers_text_plain_and_keeps_html() -> None:
    parsed = parse_mail(
        mail(
            'Content-Type: multipart/alternative; boundary="b"',
            "--b\nContent-Type: text/plain\n\nplain\n--b\nContent-Type: text/html\n\n<p>html</p>\n--b--\n",
        )
    )
    assert (parsed.text_body, parsed.html_body, parsed.attachments) == ("plain", "<p>html</p>", ())


def test_html_only_mail_keeps_html_body_and_no_text() -> None:
    parsed = parse_mail(mail("Content-Type: text/html; charset=utf-8", "<p>Grüße</p>"))
    assert (parsed.text_body, parsed.html_body) == (None, "<p>Grüße</p>")


def test_html_without_charset_parameter_uses_its_meta_charset() -> None:
    html = '<meta charset="windows-1251"><p>Привет</p>'.encode("cp1251")
    parsed = parse_mail(mail("Content-Type: text/html", html))
    assert parsed.html_body is not None
    assert "Привет" in parsed.html_body


def test_wrong_boundary_is_recovered_from_the_delimiter_lines() -> None:
    body = (
        "--real\nContent-Type: text/plain\n\nthe text\n"
        "--real\nContent-Type: application/octet-stream; name=a.bin\nContent-Transfer-Encoding: base64\n\n"
        f"{base64.b64encode(PNG).decode()}\n--real--\n"
    )
    parsed = parse_mail(mail('Content-Type: multipart/mixed; boundary="declared"', body))
    assert parsed.text_body == "the text"
    assert [(a.filename, a.content) for a in parsed.attachments] == [("a.bin", PNG)]
    assert any("boundary" in defect for defect in parsed.defects)


def test_missing_boundary_parameter_is_recovered() -> None:
    body = "--xyz\nContent-Type: text/plain\n\nonly part\n--xyz--\n"
    parsed = parse_mail(mail("Content-Type: multipart/mixed", body))
    assert parsed.text_body == "only part"


def test_missing_closing_boundary_keeps_the_last_part_and_says_so() -> None:
    body = "--b\nContent-Type: text/plain\n\nfirst\n--b\nContent-Type: text/plain\n\nsecond, unterminated\n"
    parsed = parse_mail(mail('Content-Type: multipart/mixed; boundary="b"', body))
    assert parsed.text_body is not None
    assert "second, unterminated" in parsed.text_body
    assert any("closing boundary" in defect for defect in parsed.defects)


def test_duplicate_boundary_lines_do_not_lose_parts() -> None:
    body = "--b\n--b\nContent-Type: text/plain\n\none\n--b\nContent-Type: text/plain\n\ntwo\n--b--\n"
    parsed = parse_mail(mail('Content-Type: multipart/mixed; boundary="b"', body))
    assert parsed.text_body is not None
    assert "one" in parsed.text_body
    assert "two" in parsed.text_body


# --- attachments -----------------------------------------------------------------------------------------------


def test_attachment_bytes_are_exact_and_filenames_decoded() -> None:
    encoded = base64.encodebytes(PNG).decode()
    body = (
        "--b\nContent-Type: text/plain\n\nsee attached\n"
        "--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
        "Content-Disposition: attachment; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%E2%82%AC.bin\n\n"
        f"{encoded}"
        '--b\nContent-Type: application/pdf; name="=?utf-8?B?w7xiZXIucGRm?="\nContent-Transfer-Encoding: base64\n'
        'Content-Disposition: attachment; filename="=?utf-8?B?w7xiZXIucGRm?="\n\n'
        f"{encoded}"
        "--b--\n"
    )
    parsed = parse_mail(mail('Content-Type: multipart/mixed; boundary="b"', body))
    assert [(a.filename, hashlib.sha256(a.content).digest()) for a in parsed.attachments] == [
        ("Grüße €.bin", hashlib.sha256(PNG).digest()),
        ("über.pdf", hashlib.sha256(PNG).digest()),
    ]


def test_boundary_with_pattern_characters_splits_only_at_delimiter_lines() -> None:
    # The boundary is looked for as plain bytes: its "(", "+", "?" and "." mean nothing, a boundary inside a line
    # is text, and blanks may follow a delimiter.
    boundary = "=_(a.b)+?[x]"
    body = (
        (
            f"--{boundary}  \nContent-Type: text/plain\n\nsee x--{boundary} attached\n"
            f"--{boundary}\t\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n"
        ).encode()
        + PNG
        + f"\n--{boundary}-- \nepilogue\n".encode()
    )
    parsed = parse_mail(mail(f'Content-Type: multipart/mixed; boundary="{boundary}"', body))
    assert parsed.text_body == f"see x--{boundary} attached"
    assert [a.content for a in parsed.attachments] == [PNG]


def test_inline_image_keeps_its_content_id() -> None:
    body = (
        '--r\nContent-Type: text/html\n\n<img src="cid:logo@x">\n'
        "--r\nContent-Type: image/png\nContent-ID: <logo@x>\nContent-Transfer-Encoding: base64\n\n"
        f"{base64.b64encode(PNG).decode()}\n--r--\n"
    )
    parsed = parse_mail(mail('Content-Type: multipart/related; boundary="r"', body))
    assert parsed.html_body == '<img src="cid:logo@x">'
    [image] = parsed.attachments
    assert (image.content_type, image.content_id, image.content) == ("image/png", "logo@x", PNG)


def test_attached_message_is_one_file_with_its_exact_bytes() -> None:
    inner = b"From: x@example.com\r\nSubject: Inner   subject\r\n\r\nInner body\r\n"
    raw = (
        b'Content-Type: multipart/mixed; boundary="b"\r\nSubject: outer\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nouter text\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--b--\r\n"
    )
    parsed = parse_mail(raw)
    assert parsed.text_body == "outer text"
    [attached] = parsed.attachments
    assert (attached.filename, attached.content_type, attached.content) == (
        "Inner subject.eml",
        "message/rfc822",
        inner,
    )


def test_uuencode_transfer_encoding_is_decoded() -> None:
    uu = b"begin 644 hello.txt\n" + binascii.b2a_uu(b"Hello Zammad") + b"`\nend\n"
    body = (
        b"--b\nContent-Type: text/plain\n\ntext\n"
        b"--b\nContent-Type: application/msword; name=hello.txt\nContent-Transfer-Encoding: x-uuencode\n\n"
        + uu
        + b"--b--\n"
    )
    parsed = parse_mail(mail('Content-Type: multipart/mixed; boundary="b"', body))
    assert [(a.filename, a.content) for a in parsed.attachments] == [("hello.txt", b"Hello Zammad")]


def test_uuencoded_block_in_a_plain_body_becomes_an_attachment() -> None:
    block = b"begin 644 data.bin\n" + binascii.b2a_uu(PNG[:45]) + binascii.b2a_uu(PNG[45:60]) + b"`\nend\n"
    parsed = parse_mail(mail("Subject: old school", b"Here it is:\n\n" + block + b"\nBye\n"))
    assert [(a.filename, a.content) for a in parsed.attachments] == [("data.bin", PNG[:60])]
    assert parsed.text_body is not None
    assert "begin 644" not in parsed.text_body
    assert "Bye" in parsed.text_body


def test_a_message_of_thousands_of_tiny_parts_keeps_the_first_files_and_says_how_many_more() -> None:
    parts = "".join(
        f"--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=f{n}.bin\n\n{n}\n"
        # Broken parts too: their defects must not crowd out the one that says files were left out.
        + "--b\nContent-Type: video/quicktime\nContent-Transfer-Encoding: base64\n\nQUJDR\n"
        for n in range(MAX_ATTACHMENTS)
    )
    parsed = parse_mail(mail('Content-Type: multipart/mixed; boundary="b"', f"{parts}--b--\n"))
    assert len(parsed.attachments) == MAX_ATTACHMENTS
    assert [a.filename for a in parsed.attachments[:4:2]] == ["f0.bin", "f1.bin"]
    assert parsed.defects[0] == (
        f"{MAX_ATTACHMENTS} more attachments were not stored as files (at most {MAX_ATTACHMENTS} are);"
        " the raw message has them all"
    )


def test_uuencoded_blocks_past_the_file_limit_are_counted_too() -> None:
    block = b"begin 644 data.bin\n" + binascii.b2a_uu(PNG[:45]) + b"`\nend\n"
    parsed = parse_mail(mail("Subject: old school", block * (MAX_ATTACHMENTS + 3)))
    assert len(parsed.attachments) == MAX_ATTACHMENTS
    assert parsed.defects[0].startswith("3 more attachments were not stored as files")


def test_base64_with_an_impossible_length_is_decoded_like_mail_clients_do() -> None:
    body = "--b\nContent-Type: video/quicktime\nContent-Transfer-Encoding: base64\n\n/9j/4AAQSkZJABC123456\n--b--\n"
    parsed = parse_mail(mail('Content-Type: multipart/mixed; boundary="b"', body))
    assert [len(a.content) for a in parsed.attachments] == [15]
    assert any("impossible length" in defect for defect in parsed.defects)


def test_delivery_status_is_kept_as_a_file() -> None:
    body = (
        "--b\nContent-Type: text/plain\n\nbounced\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\n"
        "Final-Recipient: rfc822; gone@example.com\nAction: failed\n--b--\n"
    )
    parsed = parse_mail(mail('Content-Type: multipart/report; report-type=delivery-status; boundary="b"', body))
    [status] = parsed.attachments
    assert status.content_type == "message/delivery-status"
    assert b"Final-Recipient: rfc822; gone@example.com" in status.content


# --- never raise -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"Content-Type: multipart/mixed; boundary=\n\n--\n--\n",
        b"Content-Type: text/plain; charset=undefined\n\n\xff\xfe",
        b"Content-Transfer-Encoding: base64\n\n!!!not base64!!!",
        b"Content-Type: text/plain\nContent-Transfer-Encoding: x-mystery\n\nbody",
        b"Content-Type: " + b"multipart/mixed; boundary=a\n\n--a\nContent-Type: " * 300 + b"text/plain\n\nx",
    ],
)
def test_never_raises_and_never_returns_unstorable_text(raw: bytes) -> None:
    parsed = parse_mail(raw)
    for text in (parsed.subject, parsed.text_body, parsed.html_body, *parsed.defects):
        if text is not None:
            assert "\x00" not in text
            text.encode("utf-8")  # no lone surrogates: PostgreSQL would refuse them


def test_unknown_transfer_encoding_is_a_defect() -> None:
    parsed = parse_mail(b"Content-Type: text/plain\nContent-Transfer-Encoding: x-mystery\n\nbody")
    assert parsed.text_body == "body"
    assert any("unknown transfer encoding" in defect for defect in parsed.defects)


def test_utf8_with_stray_latin1_bytes_keeps_the_utf8() -> None:
    parsed = parse_mail(mail("Content-Type: text/plain; charset=utf-8", "Grüße ".encode() + b"caf\xe9"))
    assert parsed.text_body == "Grüße café"
    assert parsed.defects


def test_windows_1258_html_in_an_unclosed_alternative_is_read_as_windows_1258() -> None:
    html = "<p>Je vous contacte suite =E0 ma commande du 14 ao=FBt, merci d=92avance.</p>"
    body = (
        "--rel\nContent-Type: multipart/alternative; boundary=alt\n\n"
        "--alt\nContent-Type: text/plain; charset=windows-1258\n\ntexte\n"
        "--alt\nContent-Type: text/html; charset=windows-1258\nContent-Transfer-Encoding: quoted-printable\n\n"
        f"{html}\n\n--rel--\n"
    )
    parsed = parse_mail(mail('Content-Type: multipart/related; boundary="rel"', body))
    assert parsed.html_body is not None
    assert "suite à ma commande du 14 août, merci d\u2019avance." in parsed.html_body
    assert parsed.text_body == "texte"


def test_untyped_quoted_printable_last_part_of_an_unclosed_multipart_is_body_text_with_its_last_line() -> None:
    body = (
        "--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n"
        "Content-Transfer-Encoding: base64\n\nJVBERi0=\n\n"
        "--b\nContent-Transfer-Encoding: quoted-printable\n\nRufnummer 01234=\n7 empfangen.\nEnde\n"
    )
    parsed = parse_mail(mail('Content-Type: multipart/mixed; boundary="b"', body))
    assert parsed.text_body == "Rufnummer 012347 empfangen.\nEnde\n"
    assert [(item.filename, item.content) for item in parsed.attachments] == [("a.pdf", b"%PDF-")]
