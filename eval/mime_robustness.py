"""Measure how parsing survives malformed MIME (`mime-robustness/`), through the real pipeline.

- `stalwart/eml/*/*.eml` (53 RFC, third-party and deliberately malformed mails) with the MIME tree another
  parser (Stalwart's mail-parser) reads from each, `<name>.json` for the file as stored here.
- `mime4j/testmsgs/*.msg` and `mime4j/mimetools-testmsgs/*.msg` (80 messages with bad, missing and duplicate
  boundaries, no header separator, uuencode, digests, very long lines).

Every message is delivered like the gateway stores it (with `Precedence: list` on top, see
`eval.zammad.as_bulk_mail`) and counts as stored when its inbound row is `processed` with a Message. Reported:
stored, crashed (the matcher raised), and with defects (a non-empty defect list on the Message).

For Stalwart's trees, each leaf of the top-level message is compared, as a report without a floor:
a Text or Html leaf matches when its text (whitespace collapsed) is inside the stored text or HTML body or is
the text of a stored attachment; a Binary leaf matches when an attachment has exactly its bytes. Empty leaves
and attached messages (compared as a whole file by Zammad's corpus instead) are not counted.

The floor is that every message is stored and none crashes. Without the corpus the evaluation says it was not
run and exits 0. Run as `python -m eval.mime_robustness [CORPORA_DIR]`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from eval.harness import EvalDatabase, corpora_root, eval_database
from eval.zammad import as_bulk_mail
from shared.models import Attachment, InboundMessage, InboundStatus, Message


@dataclass
class _Result:
    stored: bool
    crashed: bool
    defects: list[str]
    bodies: str
    attachments: list[bytes]


def evaluate(corpora: Path) -> dict[str, object]:
    root = corpora if (corpora / "stalwart").is_dir() else corpora / "mime-robustness"
    stalwart = sorted((root / "stalwart" / "eml").glob("*/*.eml"))
    mime4j = sorted((root / "mime4j").glob("*/*.msg"))
    if not stalwart and not mime4j:
        return {"ran": False, "reason": f"no messages under {root}"}
    report: dict[str, object] = {"ran": True}
    failures: list[str] = []
    with eval_database("mailroom_eval_mime") as db:
        for corpus, paths in (("stalwart", stalwart), ("mime4j", mime4j)):
            row = {"messages": len(paths), "stored": 0, "crashed": 0, "with_defects": 0}
            leaves = [0, 0]
            for path in paths:
                result = _deliver(db, path.read_bytes())
                row["stored"] += result.stored
                row["crashed"] += result.crashed
                row["with_defects"] += bool(result.defects)
                if not result.stored:
                    failures.append(f"{corpus}/{path.parent.name}/{path.name}: " + "; ".join(result.defects))
                expected = path.with_suffix(".json")
                if corpus == "stalwart" and result.stored and expected.is_file():
                    compared, matched = _compare_leaves(json.loads(expected.read_bytes()), result)
                    leaves[0] += compared
                    leaves[1] += matched
            if corpus == "stalwart":
                row["leaves_compared"], row["leaves_matched"] = leaves
            report[corpus] = row
    report["failures"] = failures
    report["floor_met"] = not failures
    return report


def _deliver(db: EvalDatabase, raw: bytes) -> _Result:
    account = db.new_account()  # its own account: test mails share Message-IDs
    try:
        inbound_id, _ = db.deliver(account, as_bulk_mail(raw))
    except Exception as error:  # a crash is a result to report, not a reason to stop
        return _Result(False, True, [f"{type(error).__name__}: {error}"], "", [])
    with db.sessions() as session:
        inbound = session.get_one(InboundMessage, inbound_id)
        if inbound.status != InboundStatus.processed or inbound.message_id is None:
            return _Result(False, False, [f"inbound status {inbound.status}: {inbound.hold_reason}"], "", [])
        message = session.get_one(Message, inbound.message_id)
        rows = session.scalars(select(Attachment).where(Attachment.message_id == message.id)).all()
        contents = [db.matcher.blobs.get(row.account_id, row.sha256) for row in rows]
        bodies = _collapse((message.text_body or "") + "\n" + (message.html_body or ""))
        return _Result(True, False, list(message.defects), bodies, contents)


def _compare_leaves(tree: dict[str, object], result: _Result) -> tuple[int, int]:
    parts = tree.get("parts")
    if not isinstance(parts, list):
        return 0, 0
    compared = matched = 0
    attachment_texts = [_collapse(content.decode("utf-8", "replace")) for content in result.attachments]
    for part in parts:
        body = part.get("body") if isinstance(part, dict) else None
        if not isinstance(body, dict) or len(body) != 1:
            continue
        (kind, value), *_ = body.items()
        if kind in ("Text", "Html") and isinstance(value, str) and value.strip():
            compared += 1
            text = _collapse(value)
            matched += text in result.bodies or text in attachment_texts
        elif kind in ("Binary", "InlineBinary") and isinstance(value, list) and value:
            compared += 1
            matched += bytes(value) in result.attachments
    return compared, matched


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def main(argv: list[str]) -> int:
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    report = evaluate(Path(argv[0]) if argv else corpora_root())
    if not report["ran"]:
        print(f"mime-robustness: not run ({report['reason']})")
        return 0
    print(f"{'corpus':<10} {'messages':>8} {'stored':>6} {'crashed':>7} {'defects':>7} {'leaves':>13}")
    for corpus in ("stalwart", "mime4j"):
        row = report[corpus]
        assert isinstance(row, dict)
        leaves = f"{row['leaves_matched']}/{row['leaves_compared']}" if "leaves_compared" in row else "-"
        print(
            f"{corpus:<10} {row['messages']:>8} {row['stored']:>6} {row['crashed']:>7}"
            f" {row['with_defects']:>7} {leaves:>13}"
        )
    failures = report["failures"]
    assert isinstance(failures, list)
    for failure in failures:
        print(f"FAIL {failure}")
    return 0 if report["floor_met"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
