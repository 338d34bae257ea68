"""Raw bytes → `ParsedMail`: what the rest of the matcher needs, read with mail-parser and our own recovery.

The MIME tree is the email package's (compat32, which parses without raising: the same call mail-parser makes),
and mail-parser reads the date (its grammar takes the obsolete forms real mail still carries). We call its date
reader rather than its whole `parse_from_bytes`, which also decodes every address, body and Received header (work
this module does again its own way) and cost ten times the tree: 0.57 of 0.64 ms for a 2 KB mail (`python -m
bench.parsing`). Everything that turns bytes into text is ours, because mail-parser decodes with `errors="ignore"`
and a strict address grammar: an unknown charset (`windows-874`) or an unquoted `Last, First <a@b>` silently
loses characters or whole mailboxes, and a CRM must not lose who wrote to whom. Attachment bytes are taken from
the raw message whenever it can be located, so that a download returns exactly what was sent.

Nothing here raises on bad input: what cannot be read cleanly becomes a short sentence in `defects`.
"""

from __future__ import annotations

import binascii
import codecs
import email.message
import email.parser
import email.policy
import hashlib
import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime, unquote

from mailparser.dates import parse_mail_date

_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
# Lenient on purpose: real encoded words carry spaces inside the text and a `*lang` suffix on the charset. The
# text holds no "?" (RFC 2047 encodes it), so it ends at the next one: `.*?\?=` would scan to the end of the
# header from every "=?" that never closes, which is quadratic.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
# The characters `_split_address_list` looks at; every other one is copied as it is, a run at a time.
_ADDRESS_LIST_SYNTAX = re.compile(r'[\\="(),;:<>]')
# A uuencoded block is found in two linear steps (its `begin` line, then the next `end` line) rather than one
# pattern with `(.*?)^end`, which rescans to the end of the text from every `begin` line that has no `end`.
_UUENCODE_BEGIN = re.compile(rb"^begin[ \t]+([0-7]{3,4})[ \t]+([^\r\n]+)\r?$", re.M)
_UUENCODE_END = re.compile(rb"^end[ \t]*\r?$", re.M)
_META_CHARSET = re.compile(rb"""<meta[^>]{1,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_SURROGATES = re.compile("[\ud800-\udfff]")
_HIGH_BYTE_RUN = re.compile(rb"[\x80-\xff]+")
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
_STANDARD_HEADER = re.compile(
    rb"(?i)(from|to|cc|subject|date|message-id|mime-version|content-type|received|return-path|reply-to)[ \t]*:"
)
_CONTENT_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_ASCII_BLANKS = re.compile(r"[ \t\r\n\f\v]+")
# What follows the boundary on a delimiter line: "--" on the closing one, then optional blanks.
_DELIMITER_LINE_END = re.compile(rb"(?P<closing>--)?[ \t]*(?:\r\n|\r|\n|\Z)")
_MAX_DEPTH = 40
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(byte for byte in range(256) if byte not in _BASE64_ALPHABET)
_BASE64_LINE_CHARACTERS = _BASE64_ALPHABET + b"="
_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"  # what `\s` matches in a bytes pattern
_MAX_DEFECTS = 50
# A message keeps at most this many files. Each costs a blob write and a row, and 25 MB of tiny MIME parts (or
# uuencoded blocks) make a hundred thousand of them; the raw message keeps the rest, and a defect says so.
MAX_ATTACHMENTS = 250
# Base64 bodies at least this long are not handed to the email package line by line (see `_elided_bodies`).
_ELIDED_BODY_MIN_BYTES = 4096
# What stands in for an elided body. Only the alphabet of a base64 line, so the parser takes it as it takes them.
_ELISION_MARKER = "MailroomElidedBody"
_BASE64_LINE = re.compile(rb"[A-Za-z0-9+/=]++\r?\n")  # possessive: a long line without a newline fails once
_BLANK_LINE = re.compile(rb"\n\r?\n")

# Charset names mail clients send that Python does not know, or knows as a narrower codec than the one senders
# mean. The supersets follow the WHATWG Encoding Standard, which is what browsers (and so senders' tests) use.
_CHARSET_ALIASES = {
    "windows-874": "cp874",
    "x-windows-874": "cp874",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "gb2312": "gb18030",
    "gb_2312-80": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "cp936": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "big5": "big5hkscs",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "iso_8859-1": "cp1252",
    "iso-8859-9": "cp1254",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "x-unknown": "",
    "unknown-8bit": "",
    "unknown": "",
    "default": "",
    "x-user-defined": "",
}
# Python codecs that exist but are never a mail text charset; honouring them would turn text into escapes.
_NOT_TEXT_CODECS = frozenset({"undefined", "unicode_escape", "raw_unicode_escape", "idna", "punycode", "mbcs"})
# ISO-2022-JP in the wild uses the later JIS extensions; Python's base codec refuses them.
_ISO2022_JP_FALLBACKS = ("iso2022_jp_2", "iso2022_jp_ext", "iso2022_jp_2004", "iso2022_jp_3")
_JAPANESE = ("cp932", "euc_jp", "iso2022_jp_2")
_CHINESE = ("gb18030", "big5hkscs")
_CHARSET_FAMILIES = {
    **dict.fromkeys(("iso2022_jp", "iso2022_jp_2", "iso2022_jp_ext", "cp932", "shift_jis", "euc_jp"), _JAPANESE),
    **dict.fromkeys(("gb18030", "gbk", "gb2312", "big5hkscs", "big5", "hz"), _CHINESE),
    **dict.fromkeys(("cp949", "euc_kr", "iso2022_kr"), ("cp949",)),
}
_MULTIBYTE = frozenset({*_JAPANESE, *_CHINESE, "cp949", "utf-16", "utf-32"})
_PYTHON_TRANSFER_ENCODINGS = frozenset({"quoted-printable", "base64", "x-uuencode", "uuencode", "uue", "x-uue"})
_IDENTITY_TRANSFER_ENCODINGS = frozenset({"", "7bit", "8bit", "binary", "7-bit", "8-bit"})
_DEFECT_TEXT = {
    "StartBoundaryNotFoundDefect": "multipart boundary never found",
    "CloseBoundaryNotFoundDefect": "multipart has no closing boundary",
    "FirstHeaderLineIsContinuationDefect": "first header line is a continuation line",
    "MisplacedEnvelopeHeaderDefect": "envelope From line among the headers",
    "MissingHeaderBodySeparatorDefect": "no blank line between header and body",
    "MultipartInvariantViolationDefect": "multipart content type but no parts",
    "NoBoundaryInMultipartDefect": "multipart without a boundary parameter",
    "InvalidMultipartContentTransferEncodingDefect": "multipart with a transfer encoding",
    "InvalidBase64PaddingDefect": "base64 padding is wrong",
    "InvalidBase64CharactersDefect": "base64 contains invalid characters",
    "InvalidBase64LengthDefect": "base64 data has an impossible length",
    "UndecodableBytesDefect": "undecodable bytes",
}


@dataclass(frozen=True)
class Address:
    name: str | None
    address: str

    def as_json(self) -> dict[str, str | None]:
        return {"name": self.name, "address": self.address}


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str | None
    content_type: str
    content_id: str | None
    content: bytes


@dataclass(frozen=True)
class ParsedMail:
    message_id: str  # normalized, without angle brackets; a hash of the bytes when the header is missing
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str | None
    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    sent_at: datetime | None
    text_body: str | None
    html_body: str | None
    attachments: tuple[ParsedAttachment, ...]
    headers: dict[str, str] = field(default_factory=dict)
    defects: tuple[str, ...] = ()


class _Defects:
    """Short sentences for people, deduplicated and bounded: a hostile message must not grow this without limit."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def add(self, text: str) -> None:
        if len(self._items) < _MAX_DEFECTS:
            self._items.setdefault(_safe_text(text), None)

    def add_first(self, text: str) -> None:
        """A defect that must be shown whatever else went wrong: it goes first, past the bound."""
        self._items = {_safe_text(text): None, **self._items}

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self._items)


def parse_mail(raw: bytes) -> ParsedMail:
    try:
        return _parse(raw)
    except Exception as error:  # the contract is "never raise": keep the mail, say what broke
        return _unparsed(raw, error)


def parse_address_header(value: str) -> tuple[Address, ...]:
    return _addresses(_mailboxes([value], ()))


def _parse(raw: bytes) -> ParsedMail:
    defects = _Defects()
    data = _without_mbox_line(raw)
    message = _message_tree(data, defects)
    if _has_defect(message, "MissingHeaderBodySeparatorDefect"):
        repaired = _repaired_header(data)
        if repaired is not None:
            defects.add("header had lines that are not header fields; read around them")
            data = repaired
            message = _message_tree(data, defects)
    charsets = {part: _content_charset(part) for part in message.walk()}  # read once: hints and bodies use them
    hints = _message_charsets(charsets.values())
    headers = _HeaderReader(message, hints, defects)

    own_id = _first_message_id(headers.raw("message-id"))
    references = tuple(_unique(_MESSAGE_ID.findall(headers.raw("references") or "")))
    in_reply_to = _first_message_id(headers.raw("in-reply-to"))
    if in_reply_to is not None and in_reply_to not in references:
        references = (*references, in_reply_to)

    body = _BodyWalker(defects, _raw_bodies(message, data), hints, charsets)
    body.walk(message, "message", inside_attachment=False)
    if body.files_left_out:
        defects.add_first(
            f"{body.files_left_out} more attachments were not stored as files (at most {MAX_ATTACHMENTS} are);"
            " the raw message has them all"
        )
    return ParsedMail(
        message_id=own_id or "sha256-" + hashlib.sha256(raw).hexdigest() + "@mailroom.invalid",
        in_reply_to=in_reply_to,
        references=tuple(ref for ref in references if ref != own_id),
        subject=_clean(headers.text("subject")),
        sender=headers.sender(),
        to=_addresses(headers.mailboxes("to")),
        cc=_addresses(headers.mailboxes("cc")),
        sent_at=_sent_at(message, defects),
        text_body=_joined(body.text_parts),
        html_body=_joined(body.html_parts),
        attachments=tuple(body.attachments),
        headers=headers.as_dict(),
        defects=defects.as_tuple(),
    )


def _unparsed(raw: bytes, error: Exception) -> ParsedMail:
    """The last resort: keep the bytes readable as text so a person can still see what arrived."""
    head, _, rest = _without_mbox_line(raw).partition(b"\n\n")
    text = _best_effort_text(rest or head)
    return ParsedMail(
        message_id="sha256-" + hashlib.sha256(raw).hexdigest() + "@mailroom.invalid",
        in_reply_to=None,
        references=(),
        subject=None,
        sender=None,
        to=(),
        cc=(),
        sent_at=None,
        text_body=_joined([text]),
        html_body=None,
        attachments=(),
        defects=(f"message could not be parsed ({type(error).__name__}); kept as plain text",),
    )


def _without_mbox_line(raw: bytes) -> bytes:
    # An mbox envelope line ("From sender date") is not a header; the parser would read it as the body start.
    if raw.startswith(b"From "):
        _, _, rest = raw.partition(b"\n")
        return rest
    return raw


def _message_tree(data: bytes, defects: _Defects) -> email.message.Message:
    skeleton, elided = _elided_bodies(data)
    try:
        # Both parses are called from this frame: how deep a message may nest before RecursionError stays the same.
        message = email.message_from_bytes(skeleton, policy=email.policy.compat32)
        if elided and not _restored_bodies(message, elided):
            message = email.message_from_bytes(data, policy=email.policy.compat32)
        return message
    except RecursionError:
        defects.add("MIME parts nested too deeply; only the top-level headers were read")
    except ValueError:
        # The parser reads an RFC 2231 `boundary*=` with the charset named there and catches only LookupError; one
        # with a NUL raises ValueError. Without the tree, the walker finds the parts by their delimiter lines.
        defects.add("a MIME parameter names an impossible charset; parts were found by their delimiter lines")
    return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data, headersonly=True)


def _elided_bodies(data: bytes) -> tuple[bytes, dict[str, str]]:
    """`data` with each long run of base64 lines after a blank line cut out and replaced by a marker line, and the
    cut text by marker. The email package reads a body line by line (most of a large mail's parse time was spent on
    an attachment's base64 lines), yet a line of base64 characters is, in every state of its parser, a line it
    passes over: not blank, not a header field, not a delimiter (those begin with "-"). So is a marker line, so the
    skeleton parses into the same tree with the marker opening a leaf's payload where the run opened it, and
    `_restored_bodies` puts the run back. The last line of each run stays, so the newline the parser takes off the
    end of a payload is the one it takes off the real payload."""
    if len(data) < _ELIDED_BODY_MIN_BYTES:
        return data, {}
    pieces: list[bytes] = []
    elided: dict[str, str] = {}
    kept_from = 0
    blank = _BLANK_LINE.search(data)
    while blank is not None:
        start = blank.end()
        run_end, looked_to = _base64_run(data, start)
        if run_end > start:
            marker = f"{_ELISION_MARKER}{len(elided)}\n"
            pieces += (data[kept_from:start], marker.encode("ascii"))
            elided[marker] = data[start:run_end].decode("ascii")
            kept_from = run_end
        # The line after the blank one may be blank too, and then opens the next candidate.
        blank = _BLANK_LINE.search(data, max(start, looked_to) - 1)
    if not elided:
        return data, {}
    pieces.append(data[kept_from:])
    skeleton = b"".join(pieces)
    # Should the mail itself hold text like a marker, the parse could not tell which is ours.
    if skeleton.count(_ELISION_MARKER.encode("ascii")) != len(elided):
        return data, {}
    return skeleton, elided


def _base64_run(data: bytes, start: int) -> tuple[int, int]:
    """Where the run of lines from `start` that `_elided_bodies` may cut ends (`start` when there is none worth
    cutting), and how far this looked. The run is the base64 lines of the first line's width, less the last: an
    encoder writes full lines until the last, so where each line ends is known, and the lines are checked by a few
    slices and one `translate` rather than one at a time."""
    first_line = _BASE64_LINE.match(data, start)
    if first_line is None:
        return start, start
    width = first_line.end() - start
    ending = b"\r\n" if data[first_line.end() - 2] == 0x0D else b"\n"
    lines = _lines_of_width(data, start, width, ending)
    run_end = start + (lines - 1) * width
    looked_to = start + lines * width
    if run_end - start < _ELIDED_BODY_MIN_BYTES:
        return start, looked_to
    # Without the base64 characters, exactly the line endings are left: no other byte (no "-", no byte Python's
    # `splitlines` breaks at), and no line break but at the end of each line, so none is blank.
    if data[start:run_end].translate(None, _BASE64_LINE_CHARACTERS) != ending * (lines - 1):
        return start, looked_to
    return run_end, looked_to


def _lines_of_width(data: bytes, start: int, width: int, ending: bytes) -> int:
    """How many lines of `width` bytes that end in `ending` follow one another from `start`; only their endings are
    looked at. In windows that double, so that the work stays proportional to the lines found."""
    count = 0
    window = 64
    while True:
        first = start + count * width
        complete = min(window, (len(data) - first) // width)
        if complete <= 0:
            return count
        limit = first + complete * width
        last_bytes = data[first + width - 1 : limit : width]
        found = len(last_bytes) - len(last_bytes.lstrip(b"\n"))
        if ending == b"\r\n":
            before_last = data[first + width - 2 : limit : width]
            found = min(found, len(before_last) - len(before_last.lstrip(b"\r")))
        count += found
        if found < complete:
            return count
        window *= 2


def _restored_bodies(message: email.message.Message, elided: dict[str, str]) -> bool:
    """Puts each elided run back in front of the payload its marker opens. False (and the caller parses the whole
    message) unless every marker opens a leaf's payload with more of that payload after it, as it must."""
    missing = dict(elided)
    parts = [message]
    while parts:  # not `walk()`, which recurses once per level of nesting
        part = parts.pop()
        # The stored text itself: `get_payload()` of a leaf decodes its 8-bit bytes with the charset parameter.
        payload = getattr(part, "_payload", None)
        if isinstance(payload, list):
            parts += (child for child in payload if isinstance(child, email.message.Message))
        elif isinstance(payload, str) and payload.startswith(_ELISION_MARKER):
            marker, newline, rest = payload.partition("\n")
            run = missing.pop(marker + newline, None)
            if run is None or not rest:
                return False
            part.set_payload(run + rest)
    return not missing


def _has_defect(part: email.message.Message, name: str) -> bool:
    return any(type(defect).__name__ == name for defect in part.defects)


def _repaired_header(data: bytes) -> bytes | None:
    """Mail whose header holds a line that is no header field (an unindented continuation, a banner line on top)
    ends the header there for the email package, and From, To and Subject below it are read as body. Real
    clients skip such lines; so do we, but only when standard header fields really follow."""
    end = re.search(rb"\r?\n\r?\n", data)
    head = data[: end.start()] if end else data
    lines = head.split(b"\n")
    junk = [index for index, line in enumerate(lines) if not _HEADER_LINE.match(line) and line[:1] not in b" \t"]
    if not junk or not any(_STANDARD_HEADER.match(line) for line in lines[junk[0] + 1 :]):
        return None
    skipped = set(junk)
    return b"\n".join(line for index, line in enumerate(lines) if index not in skipped) + data[len(head) :]


def _message_charsets(charsets: Iterable[str | None]) -> tuple[str, ...]:
    """The charsets to guess raw 8-bit header bytes with: those the message declares for its parts."""
    found: dict[str, None] = {}
    for charset in charsets:
        codec = _charset_codec(charset)
        if codec is not None and codec not in ("ascii", "utf-8"):
            found.setdefault(codec, None)
    return tuple(found)


# --- headers ---------------------------------------------------------------------------------------------------


class _HeaderReader:
    def __init__(self, message: email.message.Message, hints: tuple[str, ...], defects: _Defects) -> None:
        self._hints = hints
        self._defects = defects
        self._values: dict[str, list[str]] = {}
        for name, value in message.raw_items():
            self._values.setdefault(str(name).strip().lower(), []).append(_unfold(str(value)))

    def raw(self, name: str) -> str | None:
        values = self._values.get(name)
        return _best_effort_str(values[0]) if values else None

    def text(self, name: str) -> str | None:
        values = self._values.get(name)
        if not values:
            return None
        return _decode_header(values[0], self._hints, self._defects, name.capitalize())

    def mailboxes(self, name: str) -> list[tuple[str | None, str]]:
        values = self._values.get(name, [])
        if len(values) > 1:
            self._defects.add(f"{len(values)} {name.capitalize()} headers; all were read")
        return _mailboxes(values, self._hints, self._defects)

    def sender(self) -> Address | None:
        # RFC 5322 names Sender as the agent when From is unusable; Reply-To is where answers go, the nearest
        # thing to an author that spam and broken mailers leave us.
        for name in ("from", "sender", "reply-to"):
            for value in self._values.get(name, []):
                found = _addresses(_mailboxes([value], self._hints, self._defects))
                if found:
                    if name != "from":
                        self._defects.add(f"From header has no address; sender taken from {name.title()}")
                    elif len(self._values["from"]) > 1:
                        self._defects.add("several From headers; the first with an address was used")
                    return found[0]
        return None

    def as_dict(self) -> dict[str, str]:
        return {name: _best_effort_str(values[0]) for name, values in self._values.items()}


def _unfold(value: str) -> str:
    if "\n" not in value and "\r" not in value:
        return value  # most header values were never folded
    return _FOLD.sub("", value).replace("\r", "").replace("\n", "")


def _decode_header(value: str, hints: tuple[str, ...], defects: _Defects | None, label: str) -> str:
    """RFC 2047, leniently: adjacent words of one charset are joined before decoding (senders split multibyte
    characters across words), whitespace between encoded words is dropped, and raw 8-bit text is guessed."""
    if "=?" not in value:
        return _safe_text(_best_effort_str(value, hints))  # no encoded word: most names and subjects
    pieces: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            pieces.append(_decode_bytes(bytes(pending), pending_charset, defects, label))
            pending.clear()
            pending_charset = None

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        if between.strip() or pending_charset is None:
            flush()
            pieces.append(_best_effort_str(between, hints))
        charset = match.group(1).split("*", 1)[0].lower()
        if charset != pending_charset:
            flush()
        pending_charset = charset
        pending.extend(_decode_word(match.group(2), match.group(3)))
        position = match.end()
    flush()
    pieces.append(_best_effort_str(value[position:], hints))
    return _safe_text("".join(pieces))


def _decode_word(kind: str, text: str) -> bytes:
    encoded = text.encode("ascii", "surrogateescape") if _SURROGATES.search(text) else text.encode("utf-8")
    if kind in "bB":
        return _base64_bytes(encoded)[0]
    return quopri.decodestring(encoded.replace(b"_", b" "), header=False)


def _mailboxes(
    values: Iterable[str], hints: tuple[str, ...], defects: _Defects | None = None
) -> list[tuple[str | None, str]]:
    found: list[tuple[str | None, str]] = []
    for value in values:
        items = _split_address_list(_unfold(value))
        index = 0
        while index < len(items):
            item = items[index]
            following = items[index + 1] if index + 1 < len(items) else ""
            # `Müller, Bernd <b@x>` unquoted: a word without an address before an angle address is its name.
            if "@" not in item and "<" not in item and item.strip() and "<" in following:
                item = item + "," + following
                index += 1
            mailbox = _mailbox(item, hints, defects)
            if mailbox is not None:
                found.append(mailbox)
            index += 1
    return found


def _split_address_list(value: str) -> list[str]:
    """Split at top-level commas; quotes, comments, angle brackets and encoded words hold together."""
    items: list[str] = []
    current: list[str] = []
    quoted = angle = False
    # Whether `current` holds an "@" or "<"; kept as we go, since re-reading `current` at each ":" is quadratic.
    addressy = False
    comment = 0
    index = 0
    while index < len(value):
        syntax = _ADDRESS_LIST_SYNTAX.search(value, index)
        plain_end = syntax.start() if syntax is not None else len(value)
        if plain_end > index:
            current.append(value[index:plain_end])
            addressy = addressy or "@" in current[-1]
            index = plain_end
            continue
        char = value[index]
        if char == "\\" and (quoted or comment):
            current.append(value[index : index + 2])
            addressy = addressy or "@" in value[index : index + 2]
            index += 2
            continue
        if not quoted and not comment and char == "=":
            word = _ENCODED_WORD.match(value, index)
            if word is not None:
                current.append(word.group())
                addressy = addressy or "@" in word.group() or "<" in word.group()
                index = word.end()
                continue
        if quoted:
            quoted = char != '"'
        elif comment:
            comment += {"(": 1, ")": -1}.get(char, 0)
        elif char == '"':
            quoted = True
        elif char == "(":
            comment = 1
        elif char == "<":
            angle = True
        elif char == ">":
            angle = False
        elif char in ",;" and not angle:
            items.append("".join(current))
            current = []
            addressy = False
            index += 1
            continue
        elif char == ":" and not angle and not addressy:
            current = []  # a group's display name ("undisclosed-recipients:") names no mailbox
            index += 1
            continue
        current.append(char)
        addressy = addressy or char in "@<"
        index += 1
    items.append("".join(current))
    return [item for item in items if item.strip()]


def _mailbox(item: str, hints: tuple[str, ...], defects: _Defects | None) -> tuple[str | None, str] | None:
    text = item.strip()
    angle = _top_level_index(text, "<")
    if angle >= 0:
        close = text.find(">", angle)
        address = text[angle + 1 : close if close >= 0 else len(text)]
        name = _display_name(text[:angle], hints, defects)
        if not name and close >= 0:
            name = _display_name(" ".join(_comments(text[close + 1 :])), hints, defects)
    else:
        comments = _comments(text)
        words = _words(_without_comments(text).replace(">", " "))
        with_at = [word for word in words if "@" in word]
        if with_at:
            address = with_at[-1]
            rest = words[: words.index(address)] + words[words.index(address) + 1 :]
            name = _display_name(" ".join(rest) or " ".join(comments), hints, defects)
        else:
            # `=?..?= (hans@example.com)`: the only address-like text sits in the comment.
            in_comment = [word for comment in comments for word in comment.split() if "@" in word]
            address = in_comment[-1] if in_comment else " ".join(words)
            name = _display_name(" ".join(words) if in_comment else " ".join(comments), hints, defects)
    address = _clean_address(_best_effort_str(address, hints))
    return (name, address) if address else None


def _top_level_index(text: str, wanted: str) -> int:
    first = text.find(wanted)
    if first < 0 or ('"' not in text[:first] and "(" not in text[:first]):
        return first  # nothing before it opens a quote or comment (`wanted` is never one of those)
    quoted = False
    comment = 0
    for index, char in enumerate(text):
        if quoted:
            quoted = char != '"'
        elif comment:
            comment += {"(": 1, ")": -1}.get(char, 0)
        elif char == '"':
            quoted = True
        elif char == "(":
            comment = 1
        elif char == wanted:
            return index
    return -1


def _comments(text: str) -> list[str]:
    if "(" not in text:
        return []
    found: list[str] = []
    depth = 0
    current: list[str] = []
    quoted = False
    for char in text:
        if depth == 0 and char == '"':
            quoted = not quoted
        if quoted:
            continue
        if char == "(":
            depth += 1
            if depth == 1:
                continue
        elif char == ")" and depth:
            depth -= 1
            if depth == 0:
                found.append("".join(current))
                current = []
                continue
        if depth:
            current.append(char)
    return [comment.strip() for comment in found if comment.strip()]


def _without_comments(text: str) -> str:
    if "(" not in text:
        return text
    kept: list[str] = []
    depth = 0
    quoted = False
    for char in text:
        if depth == 0 and char == '"':
            quoted = not quoted
        if not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")" and depth:
            depth -= 1
            kept.append(" ")
            continue
        if depth == 0:
            kept.append(char)
    return "".join(kept)


def _words(text: str) -> list[str]:
    """Whitespace-separated words, a quoted string staying inside its word (`"a b"@example.com`)."""
    if '"' not in text:
        return text.split()
    words: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char.isspace() and not quoted:
            if current:
                words.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        words.append("".join(current))
    return words


def _display_name(text: str, hints: tuple[str, ...], defects: _Defects | None) -> str | None:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    else:
        text = text.replace('"', "")
    return _clean(_decode_header(text, hints, defects, "address"))


def _clean_address(address: str) -> str:
    address = address.strip().strip("<>").strip()
    if address.lower().startswith("mailto:"):
        address = address[len("mailto:") :]
    if address.startswith("@") and ":" in address:  # obsolete source route: <@relay:user@example.com>
        address = address.split(":", 1)[1]
    if len(address) >= 2 and address[0] == address[-1] == '"':
        address = address[1:-1].strip()
    return _safe_text(address)


def _addresses(pairs: Iterable[tuple[str | None, str]]) -> tuple[Address, ...]:
    result: list[Address] = []
    seen: set[str] = set()
    for name, address in pairs:
        address = address.strip()
        if "@" not in address or address.lower() in seen:
            continue
        seen.add(address.lower())
        result.append(Address(name=_clean(name) or None, address=address))
    return tuple(result)


# --- bodies and attachments ------------------------------------------------------------------------------------


class _BodyWalker:
    """Sorts the leaves of the MIME tree into body text, body HTML and attachments, and keeps every leaf (up to
    `MAX_ATTACHMENTS` files; the raw message keeps the rest)."""

    def __init__(
        self,
        defects: _Defects,
        raw_bodies: dict[email.message.Message, bytes],
        hints: tuple[str, ...],
        charsets: dict[email.message.Message, str | None],
    ) -> None:
        self.defects = defects
        self.hints = hints
        self.charsets = charsets  # each part's declared charset; a recovered part is not in it
        self.raw_bodies = raw_bodies
        self.text_parts: list[str] = []
        self.html_parts: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        self.files_left_out = 0

    def walk(self, part: email.message.Message, where: str, *, inside_attachment: bool) -> None:
        try:
            self._walk(part, where, inside_attachment=inside_attachment)
        except Exception as error:  # one unreadable part must not cost the rest of the message
            self.defects.add(f"{where}: could not be read ({type(error).__name__}); kept its raw bytes")
            self._attach_raw(part)
        for defect in getattr(part, "defects", []):
            name = type(defect).__name__
            self.defects.add(f"{where}: {_DEFECT_TEXT.get(name, _sentence(name))}")

    def _walk(self, part: email.message.Message, where: str, *, inside_attachment: bool) -> None:
        if where.count(".") >= _MAX_DEPTH:
            self.defects.add(f"{where}: MIME parts nested too deeply; the rest is kept as one file")
            self._attach_raw(part)
            return
        content_type = _content_type(part)
        if content_type.startswith("message/"):
            self._attach_message(part, content_type, where)
            return
        # Only a multipart's payload is asked for: a leaf's would be decoded with its charset (see `_locate`).
        if part.is_multipart():
            self._walk_multipart(part, content_type, part.get_payload(), where, inside_attachment=inside_attachment)
            return
        if content_type.startswith("multipart/"):
            recovered = _recover_multipart(part, self.raw_bodies.get(part))
            if recovered is not None:
                self.defects.add(f"{where}: multipart boundary was broken; parts recovered by their delimiter lines")
                self._walk_multipart(
                    recovered,
                    content_type,
                    recovered.get_payload(),
                    where,
                    inside_attachment=inside_attachment,
                )
                return
            content_type = "text/plain"
        self._leaf(part, content_type, where, inside_attachment=inside_attachment)

    def _walk_multipart(
        self,
        part: email.message.Message,
        content_type: str,
        children: list[object] | object,
        where: str,
        *,
        inside_attachment: bool,
    ) -> None:
        if not isinstance(children, list):
            return
        subtype = content_type.partition("/")[2]
        # A related part's resources and a signed part's signature belong to the message, not its text.
        body_count = {"related": 1, "signed": 1, "encrypted": 0}.get(subtype, len(children))
        root = _related_root(part, children) if subtype == "related" else 0
        attachment_container = inside_attachment or _disposition(part) == "attachment"
        seen_kinds: set[str] = set()
        for index, child in enumerate(children):
            if not isinstance(child, email.message.Message):
                continue
            position = index - root if subtype == "related" else index
            as_attachment = attachment_container or not (0 <= position < body_count)
            if subtype == "alternative":
                # Two alternatives of the same kind carry the same text; the second is kept as a file.
                kind = _content_type(child)
                as_attachment = as_attachment or kind in seen_kinds
                seen_kinds.add(kind)
            self.walk(child, _child_where(where, index), inside_attachment=as_attachment)

    def _leaf(self, part: email.message.Message, content_type: str, where: str, *, inside_attachment: bool) -> None:
        data = _transfer_decoded(part, self.raw_bodies.get(part), where, self.defects)
        filename = _filename(part, self.hints, self.defects)
        is_body = (
            not inside_attachment
            and content_type in ("text/plain", "text/html")
            and _disposition(part) != "attachment"
            and filename is None
        )
        if not is_body:
            self._attach(
                ParsedAttachment(
                    filename=filename, content_type=content_type, content_id=_content_id(part), content=data
                )
            )
            return
        if content_type == "text/plain":
            data = self._extract_uuencoded(data, where)
        charset = self.charsets[part] if part in self.charsets else _content_charset(part)
        if charset is None and content_type == "text/html":
            declared = _META_CHARSET.search(data[:4096])
            charset = declared.group(1).decode("ascii") if declared else None
        text = _decode_bytes(data, charset, self.defects, where)
        if text.strip():
            (self.text_parts if content_type == "text/plain" else self.html_parts).append(text)

    def _extract_uuencoded(self, data: bytes, where: str) -> bytes:
        """Old clients put files into the text as `begin 644 name … end` blocks; they are files, not text."""
        if b"begin " not in data:
            return data
        kept = bytearray()
        position = 0
        search_from = 0
        while (begin := _UUENCODE_BEGIN.search(data, search_from)) is not None:
            end = _UUENCODE_END.search(data, begin.end())
            if end is None:
                break  # no `end` line below: no later `begin` has one either
            search_from = end.end()
            content = _uudecode(data[begin.end() : end.start()])
            if content is None:
                self.defects.add(f"{where}: uuencoded block could not be decoded; left in the text")
                continue
            kept.extend(data[position : begin.start()])
            position = end.end()
            self._attach(
                ParsedAttachment(
                    filename=_best_effort_text(begin.group(2).rstrip(b" \t")).strip() or None,
                    content_type="application/octet-stream",
                    content_id=None,
                    content=content,
                )
            )
        kept.extend(data[position:])
        return bytes(kept)

    def _attach_message(self, part: email.message.Message, content_type: str, where: str) -> None:
        raw = self.raw_bodies.get(part)
        if raw is not None:
            data = _transfer_decoded(part, raw, where, self.defects)
        else:
            data = _flattened_payload(part)
            if content_type == "message/rfc822":
                self.defects.add(f"{where}: attached message rebuilt from its parts; its bytes may differ")
        filename = _filename(part, self.hints, self.defects)
        if filename is None and content_type in ("message/rfc822", "message/global"):
            subject = _inner_subject(data)
            filename = f"{subject}.eml" if subject else "message.eml"
        self._attach(
            ParsedAttachment(filename=filename, content_type=content_type, content_id=_content_id(part), content=data)
        )

    def _attach_raw(self, part: email.message.Message) -> None:
        raw = self.raw_bodies.get(part)
        if raw is not None:
            self._attach(
                ParsedAttachment(filename=None, content_type="application/octet-stream", content_id=None, content=raw)
            )

    def _attach(self, attachment: ParsedAttachment) -> None:
        if len(self.attachments) < MAX_ATTACHMENTS:
            self.attachments.append(attachment)
        else:
            self.files_left_out += 1


def _child_where(where: str, index: int) -> str:
    return f"part {index + 1}" if where == "message" else f"{where}.{index + 1}"


def _related_root(part: email.message.Message, children: list[object]) -> int:
    start = part.get_param("start")
    if isinstance(start, str) and start.strip():
        wanted = _first_message_id(start)
        for index, child in enumerate(children):
            if isinstance(child, email.message.Message) and _content_id(child) == wanted:
                return index
    return 0


def _content_type(part: email.message.Message) -> str:
    value = part.get_content_type().lower()
    return value if _CONTENT_TYPE.fullmatch(value) else "application/octet-stream"


def _disposition(part: email.message.Message) -> str | None:
    value = part.get("content-disposition")
    if value is None:
        return None
    return str(value).split(";", 1)[0].strip().lower() or None


def _content_charset(part: email.message.Message) -> str | None:
    if not _mentions(part, "content-type", "charset"):
        return None
    value = part.get_param("charset")
    if isinstance(value, tuple):  # RFC 2231 form: (charset, language, value)
        value = value[2]
    if not isinstance(value, str):
        return None
    return _best_effort_str(value).strip().strip("\"'").lower() or None


def _filename(part: email.message.Message, hints: tuple[str, ...], defects: _Defects) -> str | None:
    if not (_mentions(part, "content-disposition", "name") or _mentions(part, "content-type", "name")):
        return None  # neither "filename=" nor "name=": most parts
    try:
        value = part.get_filename()
    except ValueError:
        value = _rfc2231_filename(part, defects)
    if value is None:
        return None
    # get_filename() already joins RFC 2231 continuations; RFC 2047 inside quotes is what Outlook sends.
    return _clean(_decode_header(str(value), hints, defects, "attachment filename"))


def _rfc2231_filename(part: email.message.Message, defects: _Defects) -> str | None:
    """The file name when `get_filename()` raised: it decodes an RFC 2231 `filename*=` with the charset named there
    and catches only LookupError, so a charset with a NUL in it raises ValueError. We decode with our own lookup."""
    value = part.get_param("filename", None, "content-disposition")
    if value is None:
        value = part.get_param("name", None, "content-type")
    if isinstance(value, tuple):  # (charset, language, text), the text's bytes held as code points below 256
        charset, _, text = value
        return _decode_bytes(str(text).encode("latin-1", "replace"), charset, defects, "attachment filename")
    return unquote(value) if isinstance(value, str) else None


def _mentions(part: email.message.Message, header: str, word: str) -> bool:
    """Whether the header holds `word` in any case. A parameter of that name cannot exist otherwise, and this is far
    cheaper than the email package parsing all of the header's parameters to find that out."""
    value = part.get(header)
    return value is not None and word in str(value).lower()


def _content_id(part: email.message.Message) -> str | None:
    value = part.get("Content-ID")
    return _first_message_id(_best_effort_str(_unfold(str(value)))) if value else None


def _transfer_decoded(part: email.message.Message, raw: bytes | None, where: str, defects: _Defects) -> bytes:
    """The part's content bytes. `raw` is its undecoded body when it was located in the input; otherwise the
    email package supplies the bytes (and decodes base64 and quoted-printable itself)."""
    declared = str(part.get("content-transfer-encoding", "")).lower()
    encoding = declared.strip().strip("\"'")
    if raw is None:
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        if declared == "base64" and _has_defect(part, "InvalidBase64LengthDefect"):
            pass  # the email package gave up and returned the text: decode it below, as other readers do
        elif declared in ("base64", "quoted-printable"):
            return raw
        elif declared in _PYTHON_TRANSFER_ENCODINGS and not raw.startswith(b"begin"):
            return raw  # uudecoded by the email package; on failure it returns the `begin …` text itself
    if encoding in _IDENTITY_TRANSFER_ENCODINGS:
        return raw
    if "base64" in encoding or "base-64" in encoding:
        content, problem = _base64_bytes(raw)
        if problem:
            defects.add(f"{where}: {problem}")
        return content
    if "quoted" in encoding:
        return quopri.decodestring(raw)
    if "uu" in encoding:
        uudecoded = _uudecode(raw)
        if uudecoded is not None:
            return uudecoded
        defects.add(f"{where}: uuencoded content could not be decoded; kept as sent")
        return raw
    defects.add(f"{where}: unknown transfer encoding {encoding[:40]!r}; kept as sent")
    return raw


def _base64_bytes(data: bytes) -> tuple[bytes, str | None]:
    """Lenient base64: padding ends the data, other bytes are skipped, and a dangling last character (an
    impossible length) is dropped, which is what mail clients do."""
    padding = data.find(b"=")
    if padding >= 0:
        data = data[:padding]
    # `bytes.translate` deletes in one C pass; a regex substitution was most of a 100 KB attachment's decoding.
    # What it leaves of the data is what is skipped: the line breaks, as a rule, so it is short.
    skipped = data.translate(None, _BASE64_ALPHABET)
    problem = None
    if skipped.translate(None, _ASCII_WHITESPACE):
        problem = "base64 contains invalid characters; they were skipped"
    length = len(data) - len(skipped)
    if length % 4 == 1:
        data = data.translate(None, _NOT_BASE64)[:-1]
        length -= 1
        problem = "base64 data has an impossible length; the last character was dropped"
    try:
        # The decoder skips every byte outside the alphabet itself (it is not strict), so the data need not be
        # copied without them first; the data holds no "=", so the padding added here is the only padding.
        return binascii.a2b_base64(data + b"=" * (-length % 4)), problem
    except binascii.Error:
        return b"", "base64 could not be decoded"


def _uudecode(data: bytes) -> bytes | None:
    lines = data.splitlines()
    if lines and lines[0].startswith(b"begin"):
        lines = lines[1:]
    decoded = bytearray()
    for line in lines:
        stripped = line.rstrip(b"\r\n")
        if stripped.strip() in (b"end", b""):
            if stripped.strip() == b"end":
                break
            continue
        try:
            decoded.extend(binascii.a2b_uu(stripped))
        except binascii.Error:
            # Encoders that pad lines with spaces or garbage: decode only the bytes the length byte announces.
            length = ((stripped[0] - 32) & 63) * 4 + 5
            try:
                decoded.extend(binascii.a2b_uu(stripped[: length // 3]))
            except binascii.Error:
                return None
    return bytes(decoded) if decoded or not lines else None


def _flattened_payload(part: email.message.Message) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, list):
        return b"\n".join(child.as_bytes() for child in payload if isinstance(child, email.message.Message))
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def _inner_subject(data: bytes) -> str | None:
    headers = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data[:65536], headersonly=True)
    subject = headers.get("subject")
    return _clean(_decode_header(_unfold(str(subject)), (), None, "Subject")) if subject is not None else None


def _recover_multipart(part: email.message.Message, raw: bytes | None) -> email.message.Message | None:
    """A multipart whose declared boundary is missing or wrong: find the delimiter lines the sender really used."""
    if raw is None:
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
    counts: dict[bytes, int] = {}
    lines = raw.splitlines()
    for index, line in enumerate(lines[:-1]):
        match = re.fullmatch(rb"--([!-~][ -~]{0,69}?)(--)?[ \t]*", line)
        # A delimiter opens a part, and a part opens with a header line; a row of dashes in text does not.
        if match is not None and _HEADER_LINE.match(lines[index + 1]):
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    candidates = [boundary for boundary, count in counts.items() if count >= 1]
    if not candidates:
        return None
    boundary = max(candidates, key=lambda candidate: counts[candidate])
    head = b'Content-Type: multipart/mixed; boundary="' + boundary.replace(b'"', b"") + b'"\n\n'
    recovered = email.message_from_bytes(head + raw, policy=email.policy.compat32)
    return recovered if recovered.is_multipart() and recovered.get_payload() else None


def _raw_bodies(message: email.message.Message, data: bytes) -> dict[email.message.Message, bytes]:
    """Each part's body exactly as it sits in the raw bytes, found the way the parser found it: by splitting at
    the delimiter lines. Parts whose place cannot be confirmed are left out (their bytes come from the tree)."""
    found: dict[email.message.Message, bytes] = {}
    _locate(message, data, found)
    return found


def _locate(
    part: email.message.Message, entity: bytes, found: dict[email.message.Message, bytes], depth: int = 0
) -> None:
    # Each level splits its whole body again; past the depth the walker reads, that work is for nothing.
    if depth > _MAX_DEPTH or _has_defect(part, "MissingHeaderBodySeparatorDefect"):
        return  # the parser found the body somewhere a blank-line search would not
    body = _body_of(entity)
    found[part] = body
    # Asked first, because `get_payload()` of a leaf with 8-bit bytes decodes it with the charset parameter and
    # catches only LookupError: an RFC 2231 `charset*=` (a tuple there) or one with a NUL raises instead.
    if not part.is_multipart() or _content_type(part).startswith("message/"):
        return
    children = part.get_payload()
    if not isinstance(children, list):
        return
    boundary = part.get_boundary()
    chunks = _split_at_boundary(body, boundary) if boundary else None
    if chunks is None or len(chunks) != len(children):
        return
    for child, chunk in zip(children, chunks, strict=True):
        if isinstance(child, email.message.Message):
            _locate(child, chunk, found, depth + 1)


def _body_of(entity: bytes) -> bytes:
    if entity.startswith((b"\r\n", b"\n")):
        return entity[2:] if entity.startswith(b"\r\n") else entity[1:]
    separator = re.search(rb"\r?\n\r?\n", entity)
    return entity[separator.end() :] if separator else b""


def _split_at_boundary(body: bytes, boundary: str) -> list[bytes] | None:
    """The chunks between delimiter lines (RFC 2046 section 5.1.1), as the email package finds them: a delimiter
    line is `--boundary`, or `--boundary--` for the last, then optional blanks, at the start of a line. The
    preamble and epilogue are not chunks; without a closing delimiter the last chunk runs to the end."""
    # Every message has a boundary of its own, so a pattern made from it would be compiled for each message (which
    # cost more than the split): `bytes.find` looks for the boundary, then a fixed pattern reads the rest of its line.
    dashed = b"--" + boundary.encode("utf-8", "surrogateescape")
    chunks: list[bytes] = []
    start: int | None = None
    position = body.find(dashed)
    while position >= 0:
        at_line_start = position == 0 or body[position - 1] in b"\r\n"
        line_end = _DELIMITER_LINE_END.match(body, position + len(dashed)) if at_line_start else None
        if line_end is None:
            position = body.find(dashed, position + 1)
            continue
        if start is not None:
            chunks.append(_without_last_newline(body[start:position]))
        if line_end.group("closing"):
            return chunks
        start = line_end.end()
        position = body.find(dashed, start)
    if start is not None:
        chunks.append(body[start:])
    return chunks or None


def _without_last_newline(chunk: bytes) -> bytes:
    # The line break before a delimiter belongs to the delimiter (RFC 2046 section 5.1.1).
    if chunk.endswith(b"\r\n"):
        return chunk[:-2]
    return chunk[:-1] if chunk.endswith((b"\n", b"\r")) else chunk


# --- charsets --------------------------------------------------------------------------------------------------


def _charset_codec(charset: str | None) -> str | None:
    """The Python codec for a charset label, or None when the label is missing or names nothing usable."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").split("*", 1)[0].lower()
    label = _CHARSET_ALIASES.get(label, label)
    if not label:
        return None
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        # A label from the mail can hold what no codec name can: raw 8-bit bytes (surrogates here, which the lookup
        # cannot encode: UnicodeEncodeError) or a NUL (ValueError). Such a label names nothing, like any unknown one.
        return None
    if info.name in _NOT_TEXT_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _decode_bytes(data: bytes, charset: str | None, defects: _Defects | None, where: str) -> str:
    codec = _charset_codec(charset)
    if codec is not None:
        if codec == "cp1252":  # every byte is Latin-1 text at worst; the labels asked for it
            return _safe_text(data.decode(codec, "_mailroom_latin1"))
        if codec == "utf-8" and _is_utf8(data):
            return _safe_text(data.decode("utf-8"))
        if codec == "utf-8" and _mostly_utf8(data):
            # A few Latin bytes pasted into UTF-8 text: keep the UTF-8 and read only those bytes as Latin.
            if defects is not None:
                defects.add(f"{where}: text is not valid {charset}; stray bytes read as windows-1252")
            return _safe_text(data.decode("utf-8", "_mailroom_cp1252"))
        for candidate in (codec, *(_ISO2022_JP_FALLBACKS if codec.startswith("iso2022_jp") else ())):
            try:
                return _safe_text(data.decode(candidate))
            except UnicodeDecodeError:
                continue
        # Mislabelled text is usually in a sibling encoding (Shift_JIS labelled ISO-2022-JP, GBK as GB2312).
        text, guessed = _guess_text(data, (codec,))
        if defects is not None:
            defects.add(f"{where}: text is not valid {charset}; read as {guessed}")
        return text
    text, guessed = _guess_text(data)
    if charset and defects is not None:
        defects.add(f"{where}: unknown charset {_best_effort_str(charset[:40])!r}; read as {guessed}")
    return text


def _guess_text(data: bytes, hints: tuple[str, ...] = ()) -> tuple[str, str]:
    """Without chardet: UTF-8 is self-validating, ISO-2022 announces itself with escapes, and the charsets the
    message declares elsewhere (`hints`) come next — multibyte ones first when the 8-bit bytes come in runs, as
    CJK text does and Western text does not. windows-1252 (with Latin-1 for its five holes) accepts any byte,
    so Western text, the common case, still reads right at the end."""
    try:
        return _safe_text(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    families = [member for hint in hints for member in _CHARSET_FAMILIES.get(hint, (hint,))]
    multibyte = [codec for codec in families if codec in _MULTIBYTE]
    single = [codec for codec in families if codec not in _MULTIBYTE]
    candidates = list(_ISO2022_JP_FALLBACKS) if b"\x1b$" in data or b"\x1b(" in data else []
    candidates += multibyte + single if _bytes_in_runs(data) else single + multibyte
    for candidate in dict.fromkeys(candidates):
        try:
            return _safe_text(data.decode(candidate)), candidate
        except (UnicodeDecodeError, LookupError):
            continue
    return _safe_text(data.decode("cp1252", "_mailroom_latin1")), "windows-1252"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _mostly_utf8(data: bytes) -> bool:
    text = data.decode("utf-8", "replace")
    replaced = text.count("\ufffd")
    # Counted in C: this runs on whole bodies, and a loop over their characters took ~0.1 s per megabyte.
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    return non_ascii - replaced >= replaced


def _bytes_in_runs(data: bytes) -> bool:
    """Whether nine in ten 8-bit bytes sit next to another one. Counted per run, without a list of positions:
    this runs on whole bodies, and a position list of a 25 MB body would take gigabytes."""
    high = paired = 0
    for run in _HIGH_BYTE_RUN.finditer(data):
        length = run.end() - run.start()
        high += length
        paired += length if length > 1 else 0
    return high > 0 and paired >= 0.9 * high


def _latin1_for_undefined(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("latin-1"), error.end


def _cp1252_for_invalid(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("cp1252", "_mailroom_latin1"), error.end


codecs.register_error("_mailroom_latin1", _latin1_for_undefined)
codecs.register_error("_mailroom_cp1252", _cp1252_for_invalid)


def _best_effort_str(value: object, hints: tuple[str, ...] = ()) -> str:
    """Header text as the parser stored it: raw 8-bit bytes survive as surrogates and are decoded here."""
    text = "" if value is None else str(value)
    if not _SURROGATES.search(text):
        return text
    return _guess_text(text.encode("utf-8", "surrogateescape"), hints)[0]


def _best_effort_text(data: bytes) -> str:
    return _guess_text(data)[0]


def _safe_text(text: str) -> str:
    # PostgreSQL text holds neither NUL nor lone surrogates; either would make the whole message unstorable.
    text = text.replace("\x00", "\ufffd")
    return _SURROGATES.sub("\ufffd", text) if _SURROGATES.search(text) else text


def _sentence(defect_class: str) -> str:
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", defect_class.removesuffix("Defect"))
    return words.lower() or "defect"


# --- small helpers ---------------------------------------------------------------------------------------------


def _first_message_id(value: str | None) -> str | None:
    if not value:
        return None
    found = _MESSAGE_ID.search(value)
    if found is not None:
        return found.group(1)
    # Some clients omit the angle brackets; accept a bare token that looks like an id.
    bare = value.strip()
    return bare if bare and " " not in bare else None


def _sent_at(message: email.message.Message, defects: _Defects) -> datetime | None:
    # The first Date field as written (folded), which is what mail-parser's grammar expects.
    header = next((str(value) for name, value in message.raw_items() if name.lower() == "date"), None)
    try:
        value: object = parse_mail_date(header).value
    except Exception:  # third-party code run on hostile input; the email package's reader is the fallback
        value = None
    if not isinstance(value, datetime) and header:
        try:
            value = parsedate_to_datetime(_best_effort_str(_unfold(header)))
        except (TypeError, ValueError, IndexError, OverflowError):
            defects.add("Date header could not be read")
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _joined(parts: list[str]) -> str | None:
    text = "\n".join(part for part in parts if part)
    return text.replace("\r\n", "\n").replace("\r", "\n") or None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    # Only ASCII whitespace is folding; an ideographic space is part of what the sender wrote.
    value = _ASCII_BLANKS.sub(" ", value).strip()
    return value or None


def _unique(values: Iterator[str] | list[str]) -> list[str]:
    return list(dict.fromkeys(values))
