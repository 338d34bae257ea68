"""Everything the matcher learns from one message's bytes, in one call and without a database.

`analyse` is the seam between the two layers: the placement layer decides where a message goes from an
`Analysis` and the account's state, and never parses again. An `Analysis` is plain, picklable data, so the analysis
can run in another process (under a time and memory budget) and its result cross a pipe.
"""

from __future__ import annotations

import email
from dataclasses import dataclass

from services.matcher.mail.classify import Machine, bounce_references, bounced_recipients, machine_mail
from services.matcher.mail.conversation import outlook_conversation_key
from services.matcher.mail.originals import body_text, find_originals, with_forward_defaults
from services.matcher.mail.parsing import ParsedMail, parse_mail
from services.matcher.mail.quotes import extract_new_text
from services.matcher.mail.subjects import subject_key
from shared.models import MessageKind


@dataclass(frozen=True)
class AnalysedMail:
    """One message as it would be stored: the inbound message itself, or an original it forwards."""

    mail: ParsedMail
    new_text: str | None  # what this message adds to its thread, without quoted history
    subject_key: str | None
    # RFC 5322 references plus Outlook's conversation id when the message carries one: every id it threads by.
    thread_references: tuple[str, ...]


@dataclass(frozen=True)
class ForwardedOriginal:
    analysed: AnalysedMail
    confidence: float
    how: str  # "attached" or "inline"


@dataclass(frozen=True)
class Analysis:
    message: AnalysedMail
    machine: Machine | None  # auto-reply, bounce or bulk mail, with the reason
    bounced_recipients: tuple[str, ...]  # for a bounce: the addresses that failed
    # Used only when the user sent the message (a forward); analysed anyway so that placement never parses.
    originals: tuple[ForwardedOriginal, ...]
    # For a bounce: the Message-IDs it reports on (which of the user's sent messages bounced).
    bounce_references: tuple[str, ...] = ()


def analyse(raw: bytes) -> Analysis:
    parsed = parse_mail(raw)
    text = body_text(parsed)  # read by both the quote and the forward parser: an HTML body becomes text once
    machine = machine_mail(parsed)
    bounced: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    if machine and machine.kind is MessageKind.bounce:
        report = email.message_from_bytes(raw)
        bounced, references = tuple(bounced_recipients(report)), tuple(bounce_references(report))
    originals = tuple(
        ForwardedOriginal(analyse_mail(with_forward_defaults(original, parsed)), original.confidence, original.how)
        for original in find_originals(parsed, text)
    )
    return Analysis(analyse_mail(parsed, text), machine, bounced, originals, references)


def analyse_mail(parsed: ParsedMail, text: str | None = None) -> AnalysedMail:
    """`text` is the message's `body_text`, when the caller has it already."""
    if text is None:
        text = body_text(parsed)
    conversation = outlook_conversation_key(parsed.headers.get("thread-index"))
    references = parsed.references if conversation is None else (*parsed.references, conversation)
    return AnalysedMail(
        mail=parsed,
        new_text=extract_new_text(text) if text else None,
        subject_key=subject_key(parsed.subject),
        thread_references=references,
    )
