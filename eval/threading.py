"""Measure threading on real mail: the notmuch and dovecot imaptest corpora (`shared/corpora/threading/`).

Every message goes through the real matcher (`Matcher.process`) on a scratch database; each corpus (each
dovecot mailbox state) gets an account of its own whose user address is none of the corpus' senders. Mail that
a stranger sent straight to the Smart-BCC address is held by the matcher until it belongs to one of the user's
threads, and this corpus mail has no user in it; so each message gets a `Precedence: list` line on top (these
are mailing-list archives anyway) and is stored as list mail, through the same store-and-thread step as any
other message. Senders and recipients stay what they are: external participants.

* `threading/notmuch` — `corpora/default` against `expected/default_threads_verified.json`: a parent link is
  right when the parent named there is also the last References id present in the corpus (else the
  In-Reply-To id), read from the raw headers, and the message landed in its parent's thread; and the partition
  into threads must equal the expected one.
* `threading/notmuch-no-references` — the same mail with every References and In-Reply-To header removed, so
  only the subject fallback can thread it. Scored by pairwise F1: over all pairs of distinct messages, a pair
  is "together" when both are in one thread; precision = pairs together in both / pairs we put together,
  recall = pairs together in both / pairs expected together.
* `threading/dovecot-imaptest` — each script's THREAD=REFERENCES answers (RFC 5256), compared as partitions of
  the mailbox's 1-based positions. Mailroom stores one message per Message-ID, so positions sharing one count
  as one message. Mailroom threads are sets that only ever merge, so its threads are not trees and are not
  compared as trees; where the mailbox's references form a loop, RFC 5256 detaches a message depending on
  the order it processes them in, and a Mailroom thread that keeps it is reported as such a deviation.
* `threading/notmuch-threading`, `threading/notmuch-broken-loop` — must run without error; the thread count
  is reported.

Run as `python -m eval.threading [CORPORA_DIR]`; exits 1 when a floor is not met, 0 (saying "not run") when the
corpora are absent.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import select

from eval.harness import EvalAccount, EvalDatabase, corpora_root, eval_database
from services.matcher.pipeline import Outcome
from shared.models import InboundMessage, Message

# Not any corpus sender, so the corpus mail stays "inbound" and its people stay external participants.
EVAL_USER = "crm-user@mailroom-eval.invalid"

NOTMUCH_PARENT_FLOOR = 1.0  # every parent link
NO_REFERENCES_F1_FLOOR = 0.9

_MESSAGE_ID = re.compile(rb"<([^<>\s]+)>")
_THREAD_HEADERS = (b"references:", b"in-reply-to:")

Partition = list[set[str]]


@dataclass(frozen=True)
class _Mail:
    name: str
    raw: bytes


@dataclass(frozen=True)
class _Headers:
    message_id: str | None
    references: tuple[str, ...]
    in_reply_to: str | None


def evaluate(corpora: Path) -> dict[str, dict[str, object]]:
    """Every threading measure; `corpora` is the corpora root (holding `threading/`)."""
    root = corpora / "threading"
    notmuch = root / "notmuch"
    dovecot = root / "dovecot-imaptest"
    if not notmuch.is_dir() and not dovecot.is_dir():
        return {"threading": {"ran": False, "reason": f"{root} not found"}}
    results: dict[str, dict[str, object]] = {}
    with eval_database("mailroom_eval_threading") as db:
        if notmuch.is_dir():
            results["threading/notmuch"] = _notmuch_default(db, notmuch)
            results["threading/notmuch-no-references"] = _notmuch_without_references(db, notmuch)
            for name, folder in (("threading", "threading"), ("broken-loop", "broken/loop")):
                results[f"threading/notmuch-{name}"] = _runs(db, notmuch / "corpora" / folder)
        if dovecot.is_dir():
            results["threading/dovecot-imaptest"] = _dovecot(db, dovecot)
    return results


# --- notmuch ---------------------------------------------------------------------------------------------------


def _maildir(folder: Path) -> list[_Mail]:
    return [
        _Mail(str(path.relative_to(folder)), path.read_bytes())
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "README"
    ]


def _expected_default(notmuch: Path) -> tuple[Partition, dict[str, str | None]]:
    spec = json.loads((notmuch / "expected" / "default_threads_verified.json").read_bytes().decode("utf-8"))
    partition = [{entry["message_id"] for entry in thread} for thread in spec["threads"]]
    parents = {entry["message_id"]: entry["parent"] for thread in spec["threads"] for entry in thread}
    return partition, parents


def _notmuch_default(db: EvalDatabase, notmuch: Path) -> dict[str, object]:
    mails = _maildir(notmuch / "corpora" / "default")
    expected, expected_parents = _expected_default(notmuch)
    account = db.new_account(user_email=EVAL_USER)
    errors = _deliver_all(db, account, mails)
    threads = _threads_by_message_id(db, account)

    headers = {h.message_id: h for h in (_headers(mail.raw) for mail in mails) if h.message_id is not None}
    wrong: list[str] = []
    for message_id, expected_parent in expected_parents.items():
        parent = _parent(headers[message_id], set(headers)) if message_id in headers else None
        same_thread = expected_parent is None or threads.get(message_id) == threads.get(expected_parent)
        if parent != expected_parent or not same_thread or message_id not in threads:
            wrong.append(message_id)
    ours = _partition(threads)
    right = len(expected_parents) - len(wrong)
    passed = not errors and right >= NOTMUCH_PARENT_FLOOR * len(expected_parents) and _same(ours, expected)
    return {
        "ran": True,
        "passed": passed,
        "messages": len(expected_parents),
        "parent_links_right": right,
        "threads": len(ours),
        "expected_threads": len(expected),
        "partition_equal": _same(ours, expected),
        "wrong_parent_links": wrong,
        "errors": errors,
        "summary": f"parent links {right}/{len(expected_parents)}, threads {len(ours)}/{len(expected)}, "
        f"partition {'equal' if _same(ours, expected) else 'DIFFERENT'}",
        "floor": "52/52 parent links, partition equal",
    }


def _notmuch_without_references(db: EvalDatabase, notmuch: Path) -> dict[str, object]:
    mails = [
        _Mail(mail.name, _without_headers(mail.raw, _THREAD_HEADERS))
        for mail in _maildir(notmuch / "corpora" / "default")
    ]
    expected, _ = _expected_default(notmuch)
    account = db.new_account(user_email=EVAL_USER)
    errors = _deliver_all(db, account, mails)
    ours = _partition(_threads_by_message_id(db, account))
    precision, recall, f1 = pairwise_f1(ours, expected)
    return {
        "ran": True,
        "passed": not errors and f1 >= NO_REFERENCES_F1_FLOOR,
        "threads": len(ours),
        "expected_threads": len(expected),
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "f1": round(f1, 3),
        "errors": errors,
        "summary": f"pairwise F1 {f1:.3f} (P {precision:.3f}, R {recall:.3f}), threads {len(ours)}/{len(expected)}",
        "floor": f"pairwise F1 >= {NO_REFERENCES_F1_FLOOR}",
    }


def _runs(db: EvalDatabase, folder: Path) -> dict[str, object]:
    mails = _maildir(folder)
    account = db.new_account(user_email=EVAL_USER)
    errors = _deliver_all(db, account, mails)
    threads = len(_partition(_threads_by_message_id(db, account)))
    return {
        "ran": True,
        "passed": not errors,
        "messages": len(mails),
        "threads": threads,
        "errors": errors,
        "summary": f"{'runs without error' if not errors else f'{len(errors)} ERRORS'}, "
        f"{len(mails)} files, {threads} threads",
        "floor": "no error",
    }


# --- dovecot imaptest ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    script: str
    mailbox: tuple[int, ...]  # 0-based indexes into the .mbox, in mailbox order
    expected: str  # the `* THREAD …` line


def _dovecot(db: EvalDatabase, folder: Path) -> dict[str, object]:
    answers = [answer for script in sorted(folder.glob("thread*")) for answer in _script_answers(script)]
    rows: list[dict[str, object]] = []
    for answer in answers:
        mbox = _mbox((folder / f"{answer.script}.mbox").read_bytes())
        mails = [mbox[i] for i in answer.mailbox]
        account = db.new_account(user_email=EVAL_USER)
        positions: list[uuid.UUID | None] = []
        errors: list[str] = []
        for number, raw in enumerate(mails, start=1):
            try:
                positions.append(_deliver(db, account, raw))
            except Exception as error:  # a crash is a result to report, not a reason to stop
                positions.append(None)
                errors.append(f"{number}: {type(error).__name__}: {error}")
        threads = _threads_of_messages(db, [p for p in positions if p is not None])
        ours = _position_partition(positions, threads)
        answered = _thread_response_partition(answer.expected)
        # One stored message per Message-ID: positions that are the same message count as one.
        expected = _joined(answered, _same_message_groups(positions))
        loop = _has_reference_loop([_headers(raw) for raw in mails])
        if _same(ours, expected):
            verdict = "equal" if _same(expected, answered) else "equal (dup id)"
        else:
            verdict = "loop deviation" if loop and _coarser(ours, expected) else "DIFFERENT"
        rows.append(
            {
                "answer": f"{answer.script}: {answer.expected.strip()}",
                "ours": _render(ours),
                "verdict": verdict if not errors else "ERROR",
                "errors": errors,
            }
        )
    equal = sum(1 for row in rows if str(row["verdict"]).startswith("equal"))
    deviations = sum(1 for row in rows if row["verdict"] == "loop deviation")
    return {
        "ran": True,
        "passed": equal + deviations == len(rows),
        "answers": len(rows),
        "equal": equal,
        "loop_deviations": deviations,
        "rows": rows,
        "summary": f"THREAD=REFERENCES partitions equal {equal}/{len(rows)}"
        + (f", {deviations} reference-loop deviation(s), see below" if deviations else ""),
        "floor": "every answer equal, except RFC 5256's order-dependent loop breaking",
    }


def _script_answers(script: Path) -> list[_Answer]:
    """The mailbox state behind each `* THREAD` answer of a THREAD=REFERENCES script."""
    if script.suffix or not (script.parent / f"{script.name}.mbox").is_file():
        return []
    lines = script.read_bytes().decode("utf-8").splitlines()
    if not any(line.lower().startswith("capabilities:") and "THREAD=REFERENCES" in line.upper() for line in lines):
        return []
    mbox_size = len(_mbox((script.parent / f"{script.name}.mbox").read_bytes()))
    mailbox: list[int] = list(range(mbox_size)) if any(line.strip() == "messages: all" for line in lines) else []
    appended = len(mailbox)
    deleted: set[int] = set()
    answers: list[_Answer] = []
    asked = False
    for line in (line.strip() for line in lines):
        lowered = line.lower()
        if lowered == "ok append":
            mailbox.append(appended)
            appended += 1
        elif lowered.startswith("ok store") and "\\deleted" in lowered:
            deleted |= {int(n) - 1 for n in lowered.split()[2].split(",")}
        elif lowered == "ok expunge":
            mailbox = [m for position, m in enumerate(mailbox) if position not in deleted]
            deleted = set()
        elif lowered.startswith("ok thread references"):
            asked = True
        elif asked and lowered.startswith("* thread"):
            answers.append(_Answer(script.name, tuple(mailbox), line[len("* thread") :]))
            asked = False
    return answers


def _mbox(data: bytes) -> list[bytes]:
    messages: list[list[bytes]] = []
    previous_blank = True
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From ") and previous_blank:
            messages.append([])
        elif messages:
            messages[-1].append(line)
        previous_blank = not line.strip()
    return [b"".join(lines).rstrip(b"\r\n") + b"\n" for lines in messages]


def _thread_response_partition(response: str) -> Partition:
    """`(3 2)(1)` → [{3, 2}, {1}]: the positions under each top-level parenthesis (RFC 5256 thread-list)."""
    partition: Partition = []
    depth = 0
    for piece in re.findall(r"\(|\)|\d+", response):
        if piece == "(":
            if depth == 0:
                partition.append(set())
            depth += 1
        elif piece == ")":
            depth -= 1
        else:
            partition[-1].add(piece)
    return partition


def _position_partition(positions: Sequence[uuid.UUID | None], threads: dict[uuid.UUID, uuid.UUID]) -> Partition:
    by_thread: dict[object, set[str]] = {}
    for number, message in enumerate(positions, start=1):
        key: object = threads.get(message) if message is not None else f"error-{number}"
        by_thread.setdefault(key, set()).add(str(number))
    return list(by_thread.values())


def _same_message_groups(positions: Sequence[uuid.UUID | None]) -> Partition:
    groups: dict[uuid.UUID, set[str]] = {}
    for number, message in enumerate(positions, start=1):
        if message is not None:
            groups.setdefault(message, set()).add(str(number))
    return list(groups.values())


def _has_reference_loop(headers: Sequence[_Headers]) -> bool:
    """Whether the parent links the references imply (each id the parent of the next, the last one the parent
    of the message) form a cycle."""
    children: dict[str, set[str]] = {}
    for header in headers:
        chain = [*_references_with_reply_to(header)]
        if header.message_id is not None:
            chain.append(header.message_id)
        for parent, child in itertools.pairwise(chain):
            if parent != child:
                children.setdefault(parent, set()).add(child)
    done: set[str] = set()
    active: set[str] = set()

    def visit(node: str) -> bool:
        if node in active:
            return True
        if node in done:
            return False
        active.add(node)
        looped = any(visit(child) for child in children.get(node, ()))
        active.discard(node)
        done.add(node)
        return looped

    return any(visit(node) for node in list(children))


# --- shared ----------------------------------------------------------------------------------------------------


def _as_list_mail(raw: bytes) -> bytes:
    newline = b"\r\n" if b"\r\n" in raw[:2000] else b"\n"
    header = b"Precedence: list" + newline
    if raw.startswith(b"From "):  # an mbox separator line stays first
        first, _, rest = raw.partition(b"\n")
        return first + b"\n" + header + rest
    return header + raw


def _deliver(db: EvalDatabase, account: EvalAccount, raw: bytes) -> uuid.UUID:
    inbound_id, outcome = db.deliver(account, _as_list_mail(raw))
    if outcome not in (Outcome.stored, Outcome.duplicate):
        raise RuntimeError(f"matcher outcome {outcome.value}")
    with db.sessions() as session:
        message_id = session.scalar(select(InboundMessage.message_id).where(InboundMessage.id == inbound_id))
    if message_id is None:
        raise RuntimeError("processed without a message")
    return message_id


def _deliver_all(db: EvalDatabase, account: EvalAccount, mails: Iterable[_Mail]) -> list[str]:
    errors: list[str] = []
    for mail in mails:
        try:
            _deliver(db, account, mail.raw)
        except Exception as error:  # a crash is a result to report, not a reason to stop
            errors.append(f"{mail.name}: {type(error).__name__}: {error}")
    return errors


def _threads_by_message_id(db: EvalDatabase, account: EvalAccount) -> dict[str, uuid.UUID]:
    with db.sessions() as session:
        rows = session.execute(
            select(Message.message_id_header, Message.thread_id).where(Message.account_id == account.account_id)
        ).all()
    return {row.message_id_header: row.thread_id for row in rows}


def _threads_of_messages(db: EvalDatabase, messages: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    with db.sessions() as session:
        rows = session.execute(select(Message.id, Message.thread_id).where(Message.id.in_(messages))).all()
    return {row.id: row.thread_id for row in rows}


def _partition(threads: dict[str, uuid.UUID]) -> Partition:
    by_thread: dict[uuid.UUID, set[str]] = {}
    for message_id, thread_id in threads.items():
        by_thread.setdefault(thread_id, set()).add(message_id)
    return list(by_thread.values())


def _same(ours: Partition, expected: Partition) -> bool:
    return {frozenset(block) for block in ours} == {frozenset(block) for block in expected}


def _coarser(ours: Partition, expected: Partition) -> bool:
    """Whether every expected thread lies inside one of ours (we only joined what was expected apart)."""
    return all(any(block <= mine for mine in ours) for block in expected)


def _joined(partition: Partition, groups: Partition) -> Partition:
    """The finest partition coarser than both: blocks that share an element become one."""
    merged: Partition = []
    for block in [*partition, *groups]:
        block = set(block)
        for other in [m for m in merged if m & block]:
            block |= other
            merged.remove(other)
        merged.append(block)
    return merged


def _pairs(partition: Partition) -> set[frozenset[str]]:
    return {frozenset((a, b)) for block in partition for a in block for b in block if a < b}


def pairwise_f1(ours: Partition, expected: Partition) -> tuple[float, float, float]:
    """Precision, recall and F1 over the pairs of messages placed in the same thread."""
    mine, theirs = _pairs(ours), _pairs(expected)
    both = len(mine & theirs)
    precision = both / len(mine) if mine else 1.0
    recall = both / len(theirs) if theirs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _render(partition: Partition) -> str:
    blocks = sorted((sorted(block, key=int) for block in partition), key=lambda b: int(b[0]))
    return "".join("(" + " ".join(block) + ")" for block in blocks)


def _header_block(raw: bytes) -> bytes:
    match = re.search(rb"\r?\n\r?\n", raw)
    return raw if match is None else raw[: match.start()]


def _headers(raw: bytes) -> _Headers:
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(_header_block(raw))

    def ids(name: str) -> list[str]:
        value = parsed.get(name)
        return [m.decode("ascii", "replace") for m in _MESSAGE_ID.findall(str(value or "").encode())]

    own = ids("Message-ID")
    reply_to = ids("In-Reply-To")
    return _Headers(own[0] if own else None, tuple(ids("References")), reply_to[0] if reply_to else None)


def _references_with_reply_to(header: _Headers) -> list[str]:
    chain = list(dict.fromkeys(header.references))
    if header.in_reply_to is not None and header.in_reply_to not in chain:
        chain.append(header.in_reply_to)
    return [ref for ref in chain if ref != header.message_id]


def _parent(header: _Headers, present: set[str]) -> str | None:
    """The verified rule: the last References id present in the corpus, else the In-Reply-To id if present."""
    for ref in reversed(header.references):
        if ref in present and ref != header.message_id:
            return ref
    if header.in_reply_to is not None and header.in_reply_to in present:
        return header.in_reply_to
    return None


def _without_headers(raw: bytes, names: tuple[bytes, ...]) -> bytes:
    """The message without the named header fields (and their folded continuation lines); body untouched."""
    end = re.search(rb"\r?\n\r?\n", raw)
    head, body = (raw, b"") if end is None else (raw[: end.start()], raw[end.start() :])
    kept: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):  # a folded continuation belongs to the field above it
            if not dropping:
                kept.append(line)
            continue
        dropping = line.lower().startswith(names)
        if not dropping:
            kept.append(line)
    return b"".join(kept).rstrip(b"\r\n") + body


def main(argv: list[str]) -> int:
    corpora = Path(argv[0]) if argv else corpora_root()
    if not (corpora / "threading").is_dir():
        print(f"threading: not run ({corpora / 'threading'} not found)")
        return 0
    # The matcher logs every message; the table is what this run is for.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    results = evaluate(corpora)
    print(f"{'measure':<36} {'ok':<4} result  [floor]")
    for name, result in results.items():
        print(
            f"{name:<36} {'yes' if result.get('passed') else 'NO':<4} {result.get('summary')}  [{result.get('floor')}]"
        )
    for name, result in results.items():
        for key in ("wrong_parent_links", "errors"):
            for item in result.get(key) or []:  # type: ignore[attr-defined]
                print(f"  {name} {key}: {item}")
        rows = result.get("rows")
        if isinstance(rows, list):
            for row in rows:
                print(f"  {row['verdict']:<15} expected {row['answer']:<45} ours {row['ours']}")
    print(
        "F1 is pairwise: over all pairs of distinct messages, a pair counts as together when both messages are in"
        " one thread.\n'equal (dup id)': equal once positions sharing a Message-ID count as the one message"
        " Mailroom stores.\n'loop deviation': the mailbox's references form a loop; RFC 5256 then detaches a"
        " message depending on processing order, Mailroom keeps it in the thread (threads never split)."
    )
    return 0 if all(result.get("passed") for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
