"""Measure mail parsing on Zammad's 106 real support mails (`zammad/`), through the real pipeline.

Every `mail/*.box` is delivered as the gateway would store it (with `Precedence: list` on top, see `as_bulk_mail`)
and run through the matcher on a scratch database; it counts as stored when its inbound row is `processed` and
points at a Message. The Message row, its Attachment
rows and the blob store are then compared with `expected_json/<name>.json` (Zammad's own parse):

- **from**: Zammad's `from_email` against `Message.from_address`, case-insensitively and ignoring `"`, `<`, `>`
  (Zammad keeps quotes and a stray `>` of broken headers in its value). Zammad falls back to the whole header
  text when it finds no address (`MAILER-DAEMON`); Mailroom keeps only real addresses, so an expected value
  without `@` must come out as no sender.
- **to / cc**: Zammad stores the decoded header as one string (`"Name" <addr>, addr2`). It is split here into
  mailboxes and compared as a set of addresses (same normalization as from); where Zammad shows a display name
  that differs from the address, Mailroom's name for that address must be equal after unquoting and collapsing
  whitespace. No cc and an empty cc are the same.
- **subject**: equal after collapsing runs of ASCII whitespace (Mailroom unfolds, Zammad keeps folding tabs).
- **attachments**: Zammad lists more than files. Its `content-alternative` entry (`message.html`) is the HTML
  body converted to UTF-8 with LF line ends: it is compared with `Message.html_body` (exact MD5, else equal after
  collapsing whitespace). When the declared charset does not convert cleanly in Ruby (bytes invalid in it, or a
  label Ruby has no converter for, such as windows-1258), Zammad re-reads the whole part in the charset its
  detector guesses (rchardet; ISO-8859-2 for both such mails here), so its file is mojibake of the part and no
  faithful reader can reproduce it. Such an entry counts only when both hold: (1) it *is* a re-reading of one
  text part — the part's transfer-decoded bytes with LF line ends, decoded strictly in one of the charsets that
  detector can report (`_DETECTOR_CHARSETS`), have exactly the expected MD5 — and (2) Mailroom's body holds
  that part read with its *declared* charset: exactly, or, where bytes are invalid in that charset, with any
  one to three characters in place of each invalid sequence (U+FFFD, or the byte read as Latin text).
  Every other entry must be an Attachment of the message whose bytes have the expected
  SHA-256, or the same bytes with CRLF or LF line ends: Zammad converts the whole mail to CRLF before parsing
  and its mail library turns the line ends of 7bit/8bit bodies into LF, while these files mix both. A text entry
  (text/plain, text/html, or no type, which RFC 2045 makes text/plain) that Mailroom keeps as part of the body
  (a second inline HTML part, for instance) counts when its text is found in the stored body; the part is
  located by those same SHA-256 variants, and also with one line break more at the end, because the email
  package used here to locate it drops the last line break of the last part of a multipart that never closes
  (Zammad and Mailroom keep it).

The corpus is not part of this repository; without it the evaluation says it was not run and exits 0.
Run as `python -m eval.zammad [CORPORA_DIR]`.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from eval.harness import EvalAccount, EvalDatabase, corpora_root, eval_database
from shared.models import Attachment, InboundMessage, InboundStatus, Message

FLOOR = 0.98
# What Zammad's charset detector (rchardet, a port of Mozilla's universal detector) can answer, as Python codecs.
_DETECTOR_CHARSETS = (
    "utf-8",
    "iso8859_2",
    "cp1250",
    "latin_1",
    "cp1252",
    "iso8859_5",
    "cp1251",
    "koi8_r",
    "mac_cyrillic",
    "cp855",
    "cp866",
    "iso8859_7",
    "cp1253",
    "iso8859_8",
    "cp1255",
    "tis_620",
    "big5",
    "gb2312",
    "euc_jp",
    "shift_jis",
    "euc_kr",
)
_FIELDS = ("stored", "from", "to", "cc", "subject", "attachments")


@dataclass
class _Stored:
    message: Message | None
    raw: bytes = b""
    attachments: list[bytes] = field(default_factory=list)
    status: str = ""


def evaluate(corpora: Path) -> dict[str, object]:
    root = corpora if (corpora / "expected_json").is_dir() else corpora / "zammad"
    if not (root / "expected_json").is_dir():
        return {"ran": False, "reason": f"{root / 'expected_json'} not found"}
    names = sorted(path.stem for path in (root / "expected_json").glob("*.json"))
    passed = dict.fromkeys(_FIELDS, 0)
    failures: dict[str, list[str]] = {}
    attachment_total = attachment_found = 0
    with eval_database("mailroom_eval_zammad") as db:
        for name in names:
            raw = (root / "mail" / f"{name}.box").read_bytes()
            expected = json.loads((root / "expected_json" / f"{name}.json").read_bytes().decode("utf-8"))
            # An account per mail: several test mails share a Message-ID and would be taken for duplicates.
            stored = _deliver(db, db.new_account(), raw)
            problems = _compare(expected, stored)
            wanted, found, missing = _attachments(expected, stored)
            attachment_total += wanted
            attachment_found += found
            if missing:
                problems["attachments"] = "missing " + ", ".join(missing)
            for name_of_field in _FIELDS:
                if name_of_field not in problems:
                    passed[name_of_field] += 1
            if problems:
                failures[name] = [f"{key}: {value}" for key, value in problems.items()]
    total = len(names)
    return {
        "ran": True,
        "mails": total,
        "passed": passed,
        "attachments_expected": attachment_total,
        "attachments_found": attachment_found,
        "failures": failures,
        "floor_met": all(passed[key] >= FLOOR * total for key in _FIELDS if key != "attachments")
        and attachment_found == attachment_total
        and passed["stored"] == total,
    }


def as_bulk_mail(raw: bytes) -> bytes:
    """The raw mail with `Precedence: list` on top.

    The matcher holds mail that strangers send straight to a Smart-BCC address (it belongs to none of the user's
    threads); bulk mail is stored. One header line in front changes nothing the parser is measured on, and an
    mbox separator line stays first so that the parser still has to deal with it.
    """
    newline = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
    if raw.startswith(b"From "):
        first, _, rest = raw.partition(b"\n")
        return first + b"\n" + b"Precedence: list" + newline + rest
    return b"Precedence: list" + newline + raw


def _deliver(db: EvalDatabase, account: EvalAccount, raw: bytes) -> _Stored:
    inbound_id, _ = db.deliver(account, as_bulk_mail(raw))
    with db.sessions() as session:
        inbound = session.get_one(InboundMessage, inbound_id)
        if inbound.status != InboundStatus.processed or inbound.message_id is None:
            return _Stored(message=None, raw=raw, status=inbound.status)
        message = session.get_one(Message, inbound.message_id)
        rows = session.scalars(select(Attachment).where(Attachment.message_id == message.id)).all()
        contents = [db.matcher.blobs.get(row.account_id, row.sha256) for row in rows]
        session.expunge(message)
        return _Stored(message=message, raw=raw, attachments=contents, status=inbound.status)


def _compare(expected: dict[str, object], stored: _Stored) -> dict[str, str]:
    message = stored.message
    if message is None:
        return dict.fromkeys(_FIELDS, f"not stored (inbound status {stored.status})")
    problems: dict[str, str] = {}
    want_from = str(expected.get("from_email") or "")
    want_from_key = _address_key(want_from) if "@" in want_from else ""
    got_from_key = _address_key(message.from_address or "")
    if want_from_key != got_from_key:
        problems["from"] = f"expected {want_from!r}, got {message.from_address!r}"
    for key, got in (("to", message.to), ("cc", message.cc)):
        problem = _compare_mailboxes(str(expected.get(key) or ""), got)
        if problem:
            problems[key] = problem
    want_subject = _collapse(str(expected.get("subject") or ""))
    got_subject = _collapse(message.subject or "")
    if want_subject != got_subject:
        problems["subject"] = f"expected {want_subject!r}, got {got_subject!r}"
    return problems


def _compare_mailboxes(expected: str, got: list[dict[str, object]]) -> str | None:
    want = {_address_key(address): name for name, address in _zammad_mailboxes(expected) if "@" in address}
    have = {_address_key(str(item.get("address") or "")): str(item.get("name") or "") for item in got}
    if set(want) != set(have):
        return f"expected {sorted(want)}, got {sorted(have)}"
    for address, name in want.items():
        if name and _name_key(name) != _address_key(address) and _name_key(name) != _name_key(have[address]):
            return f"name of {address}: expected {name!r}, got {have[address]!r}"
    return None


def _zammad_mailboxes(value: str) -> list[tuple[str, str]]:
    """Zammad's decoded `"Name" <addr>, addr (Name)` string as (name, address) pairs."""
    items: list[str] = []
    current = ""
    quoted = angle = False
    for char in value:
        if char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        elif char == "," and not quoted and not angle:
            items.append(current)
            current = ""
            continue
        current += char
    items.append(current)
    pairs: list[tuple[str, str]] = []
    for item in (item.strip() for item in items):
        angled = re.fullmatch(r"(.*?)<([^<>]*)>\s*(?:\(.*\))?", item, re.S)
        commented = re.fullmatch(r"([^()]*?)\s*\(([^()]*)\)", item)
        if angled:
            pairs.append((angled.group(1), angled.group(2)))
        elif commented and "@" in commented.group(2) and "@" not in commented.group(1):
            pairs.append((commented.group(1), commented.group(2)))
        elif commented:
            pairs.append((commented.group(2), commented.group(1)))
        elif item:
            pairs.append(("", item))
    return pairs


def _address_key(address: str) -> str:
    return re.sub(r'["<>]', "", address).strip().lower()


def _name_key(name: str) -> str:
    return _collapse(name.replace('"', "")).casefold()


def _collapse(text: str) -> str:
    return re.sub(r"[ \t\r\n\f\v]+", " ", text).strip()


def _attachments(expected: dict[str, object], stored: _Stored) -> tuple[int, int, list[str]]:
    entries = expected.get("attachments") or []
    assert isinstance(entries, list)
    message = stored.message
    sha256s = set()
    for content in stored.attachments:
        sha256s.add(hashlib.sha256(content).hexdigest())
        sha256s.add(hashlib.sha256(_crlf(content)).hexdigest())
        sha256s.add(hashlib.sha256(_lf(content)).hexdigest())
    found = 0
    missing: list[str] = []
    for entry in entries:
        assert isinstance(entry, dict)
        preferences = entry.get("preferences") or {}
        assert isinstance(preferences, dict)
        if message is None:
            ok = False
        elif preferences.get("content-alternative"):
            ok = _is_body(entry, message.html_body, stored) or _is_body(entry, message.text_body, stored)
        else:
            ok = entry["sha256"] in sha256s or (
                str(preferences.get("Mime-Type") or "text/plain").startswith("text/") and _text_in_body(entry, stored)
            )
        if ok:
            found += 1
        else:
            missing.append(f"{entry.get('filename')} ({entry.get('size')} bytes)")
    return len(entries), found, missing


def _is_body(entry: dict[str, object], body: str | None, stored: _Stored) -> bool:
    if body is None:
        return False
    if hashlib.md5(body.encode("utf-8")).hexdigest() == entry["md5"]:  # noqa: S324 -- Zammad's fingerprint
        return True
    # Not byte-equal (Ruby and Python codecs differ on a few legacy charsets; several HTML parts are joined):
    # find the part Zammad meant by its size and check that its text is what the body holds.
    size = int(str(entry["size"]))
    for text in _text_parts(stored.raw):
        if abs(len(text.encode("utf-8")) - size) <= max(2, size // 100) and _collapse(text) in _collapse(body):
            return True
    return _is_redetected_body(entry, body, stored)


def _is_redetected_body(entry: dict[str, object], body: str, stored: _Stored) -> bool:
    """Zammad's file is a text part re-read in a charset its detector guessed (see the module docstring): find
    that part by exact MD5, then require the body to hold the part read with its declared charset."""
    for part in _leaves(stored.raw):
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes) or part.get_content_maintype() != "text":
            continue
        data = _lf(data)
        if not any(_redecoded_md5(data, charset) == entry["md5"] for charset in _DETECTOR_CHARSETS):
            continue
        try:
            text = data.decode(part.get_content_charset() or "us-ascii", "replace")
        except LookupError:
            return False  # a label Python does not know: nothing to hold the body against
        # Each U+FFFD stands for one invalid sequence (one to three bytes); a faithful reader shows something there.
        pattern = ".{1,3}".join(re.escape(piece) for piece in text.replace("\r", "\n").split("\ufffd"))
        return re.search(pattern, body.replace("\r\n", "\n").replace("\r", "\n"), re.S) is not None
    return False


def _redecoded_md5(data: bytes, charset: str) -> str | None:
    try:
        text = data.decode(charset)
    except UnicodeDecodeError:
        return None
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 -- Zammad's fingerprint


def _text_in_body(entry: dict[str, object], stored: _Stored) -> bool:
    """A text part Zammad lists as a file and Mailroom keeps as body: the part with those exact bytes must have
    its text in the stored body."""
    message = stored.message
    if message is None:
        return False
    bodies = _collapse((message.html_body or "") + "\n" + (message.text_body or ""))
    for part in _leaves(stored.raw):
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        variants = (data, _crlf(data), _lf(data), _lf(data) + b"\n", _crlf(data) + b"\r\n")
        if entry["sha256"] in {hashlib.sha256(variant).hexdigest() for variant in variants}:
            text = data.decode(part.get_content_charset() or "utf-8", "replace")
            return _collapse(text) in bodies
    return False


def _text_parts(raw: bytes) -> list[str]:
    texts: list[str] = []
    for part in _leaves(raw):
        data = part.get_payload(decode=True)
        if isinstance(data, bytes) and part.get_content_maintype() == "text":
            try:
                texts.append(data.decode(part.get_content_charset() or "utf-8", "replace"))
            except LookupError:
                texts.append(data.decode("utf-8", "replace"))
    return texts


def _leaves(raw: bytes) -> list[email.message.Message]:
    if raw.startswith(b"From "):
        raw = raw.partition(b"\n")[2]
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    return [part for part in message.walk() if not part.is_multipart()]


def _lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def main(argv: list[str]) -> int:
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    corpora = Path(argv[0]) if argv else corpora_root()
    report = evaluate(corpora)
    if not report["ran"]:
        print(f"zammad: not run ({report['reason']})")
        return 0
    total = report["mails"]
    passed = report["passed"]
    assert isinstance(passed, dict)
    assert isinstance(total, int)
    print(f"{'field':<12} {'passed':>6} / {total}")
    for key in _FIELDS:
        print(f"{key:<12} {passed[key]:>6} / {total}  ({passed[key] / total:.1%})")
    print(f"{'attachment':<12} {report['attachments_found']:>6} / {report['attachments_expected']}")
    failures = report["failures"]
    assert isinstance(failures, dict)
    for name, problems in failures.items():
        print(f"FAIL {name}")
        for problem in problems:
            print(f"     {problem}")
    return 0 if report["floor_met"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
