"""Inputs that once made one message's analysis take minutes (a regex retrying a long run from every position).

Each runs `analyse` in a child process with a hard timeout, on an input large enough that the old code needed
minutes for it; the fixed code needs well under a second. A hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Generous: the machine running the suite may be busy, and only a hang (minutes) must fail.
HARD_TIMEOUT_SECONDS = 60

_CHILD = """
import json, sys
from services.matcher.mail.analysis import analyse
analysis = analyse(sys.stdin.buffer.read())
mail = analysis.message.mail
print(json.dumps({
    "sender": mail.sender.address if mail.sender else None,
    "subject": mail.subject,
    "new_text": analysis.message.new_text,
    "attachments": len(mail.attachments),
    "originals": [o.analysed.mail.sender.address if o.analysed.mail.sender else None for o in analysis.originals],
}))
"""


def message(body: str, *, subject: str = "Hello", headers: str = "", content_type: str = "text/plain") -> bytes:
    return (
        "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n"
        f"Subject: {subject}\r\nMessage-ID: <slow@example.com>\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
        f"{headers}Content-Type: {content_type}; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def forward(body: str) -> bytes:
    return message(f"---------- Forwarded message ---------\n{body}", subject="Fwd: the offer")


CAROL = "Carol <carol@example.com>"

# name → raw message; each one a shape that used to be quadratic (or worse) in its size.
SLOW_INPUTS: dict[str, bytes] = {
    # A word, then a long run of blanks: the reply-header key pattern tried every split of the run.
    "letter then 200k spaces": message("a" + " " * 200_000 + "b"),
    "letter then 200k tabs, colon": message("a" + "\t" * 200_000 + "b:"),
    "history phrase then 50k spaces": message("original message" + " " * 50_000 + "x"),
    "key then 200k spaces above a header block": message("ab" + " " * 200_000 + "x\nFrom: a\nSent: b\nTo: c\n"),
    # "=?" that never closes: the encoded-word pattern scanned to the end from each one.
    "40k unclosed encoded words in Cc": message("x", headers="Cc: " + "=?utf-8?q?a" * 40_000 + "\r\n"),
    # uuencode `begin` lines without `end`: each rescanned the rest of the text.
    "40k uuencode begin lines": message("begin 644 x\n" * 40_000),
    # Outlook's `name<mailto:x>` link annotations: each re-split everything before it.
    "40k glued mailto links": forward("From: " + "x<mailto:a>" * 40_000),
    # HTML that html.parser rescans to the end for each opening: unclosed comments and tags.
    "100k unclosed HTML comments": message("<!--" * 100_000, content_type="text/html"),
    "100k unclosed HTML tags": message("<a" * 100_000, content_type="text/html"),
    # Attribution-like lines that nearly match: every split into date and name was tried.
    "1000 near-miss attributions in a forward": message(
        ("On " + "a " * 290 + "<b@c.d> x wrote:\n") * 1000, subject="Fwd: the offer"
    ),
    # A forwarded line quoted 100k levels deep was copied once per level.
    "forwarded line quoted 100k deep": forward(f"From: {CAROL}\nSubject: x\n\n" + "> " * 100_000 + "x"),
    # A wrapped address list was re-joined once per line.
    "forwarded To wrapped over 100k lines": forward(f"From: {CAROL}\nTo: a@b.c,\n" + " d@e.f,\n" * 100_000),
    # Each removed prefix re-read the rest of the subject.
    "subject with 100k reply prefixes": message("x", subject="Re: Fwd: " * 100_000),
    # Each ":" re-read the address collected so far.
    "address followed by 200k colons": message("x", headers="Cc: a@b" + ":" * 200_000 + "\r\n"),
}


def analyse_in_child(raw: bytes) -> dict[str, object]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=raw,
        capture_output=True,
        timeout=HARD_TIMEOUT_SECONDS,
        cwd=ROOT,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


@pytest.mark.parametrize("name", sorted(SLOW_INPUTS))
def test_hostile_input_is_analysed_promptly(name: str) -> None:
    analysis = analyse_in_child(SLOW_INPUTS[name])

    assert analysis["sender"] == "alice@example.com"


def test_uuencoded_file_in_text_is_still_found() -> None:
    body = "see the file\nbegin 644 note.txt\n%:&D*\n`\nend\nthanks\n"

    analysis = analyse_in_child(message(body))

    assert analysis["attachments"] == 1
    assert analysis["new_text"] == "see the file\n\nthanks"
