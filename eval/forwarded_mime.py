"""The crisp forwarded bodies as real mail a salesperson forwards to their Smart-BCC address.

Each forwarded case is wrapped into a MIME message from the user (text/plain alone, text/plain + text/html
alternatives, and HTML alone), sent over SMTP to a running gateway, processed by a running matcher worker, and the
stored message is compared with the expected original: author, recipients and subject. Floor: 99% (for the two
shapes the issue names).
"""

from __future__ import annotations

import html
import json
import sys
import time
import uuid
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from sqlalchemy import func, select

from eval.harness import EvalDatabase, corpora_root, eval_database, running_mailroom
from shared.models import InboundMessage, Message
from tests.support.stack import send

FLOOR = 0.99
VARIANTS = ("text/plain", "alternative", "text/html")
# The floor covers what clients send (plain, or plain + HTML); HTML-only forwards are measured too.
FLOORED = ("text/plain", "alternative")


def _wrap(body: str, subject: str, sender: str, variant: str, case_id: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Sam Seller <{sender}>"
    mail["To"] = "crm@bcc.eval"
    mail["Subject"] = subject
    mail["Date"] = "Tue, 24 Nov 2026 10:00:00 +0000"
    mail["Message-ID"] = f"<{case_id.replace('/', '.')}.{variant.replace('/', '-')}@forward.eval>"
    markup = "<div>" + "<br>\n".join(html.escape(line) for line in body.split("\n")) + "</div>"
    page = f"<html><body>{markup}</body></html>"
    if variant == "text/html":
        mail.set_content(page, subtype="html")
        return mail.as_bytes(policy=SMTP)
    mail.set_content(body)
    if variant == "alternative":
        mail.add_alternative(page, subtype="html")
    return mail.as_bytes(policy=SMTP)


def _recipients_match(expected: dict[str, object], field: str, stored: list[dict[str, object]]) -> bool:
    """Every recipient the case lists (as upstream: by position; unlisted positions are not checked)."""
    for key, value in expected.items():
        prefix = f"email.{field}["
        if key.startswith(prefix) and key.endswith("].address"):
            index = int(key[len(prefix) : key.index("]")])
            if index >= len(stored) or str(stored[index]["address"]).lower() != str(value).lower():
                return False
    return True


def _wait_until_processed(db: EvalDatabase, inbound_ids: list[uuid.UUID], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.sessions() as session:
            waiting = session.scalar(
                select(func.count())
                .select_from(InboundMessage)
                .where(InboundMessage.id.in_(inbound_ids), InboundMessage.status == "received")
            )
        if not waiting:
            return
        time.sleep(0.2)


def _stored(db: EvalDatabase, inbound_id: object) -> Message | None:
    with db.sessions() as session:
        message_id = session.scalar(select(InboundMessage.message_id).where(InboundMessage.id == inbound_id))
        return None if message_id is None else session.get(Message, message_id)


def evaluate(corpora: Path) -> dict[str, object]:
    root = corpora / "forwarded" / "crisp"
    spec_file = root / "expected.json"
    if not spec_file.is_file():
        return {"ran": False, "reason": f"{spec_file} not found"}
    cases = [
        case
        for case in json.loads(spec_file.read_bytes())["cases"]
        if case["expected"].get("forwarded") is True and case["expected"].get("email.from.address")
    ]
    results: dict[str, dict[str, object]] = {}
    with eval_database("mailroom_eval_forwarded") as db, running_mailroom(db) as mailroom:
        for variant in VARIANTS:
            account = db.new_account(f"sam.seller@{variant.replace('/', '-')}.mailroom-eval.example", "Sam Seller")
            sent: list[tuple[dict[str, object], uuid.UUID]] = []
            for case in cases:
                expected = case["expected"]
                body = (root / case["body_file"]).read_bytes().decode("utf-8")
                subject_file = case.get("subject_file")
                outer_subject = (
                    (root / subject_file).read_bytes().decode("utf-8").strip()
                    if subject_file
                    else f"Fwd: {expected.get('email.subject') or ''}".strip()
                )
                raw = _wrap(body, outer_subject, account.user_email, variant, case["id"])
                reply = send(mailroom.smtp_port, [account.bcc_address], raw, sender=account.user_email)
                sent.append((case, uuid.UUID(reply.rsplit(" ", 1)[1])))
            _wait_until_processed(db, [inbound_id for _, inbound_id in sent])
            failures: list[str] = []
            for case, inbound_id in sent:
                expected = case["expected"]
                assert isinstance(expected, dict)
                message = _stored(db, inbound_id)
                ok = (
                    message is not None
                    and message.kind == "forwarded"
                    and (message.from_address or "").lower() == str(expected["email.from.address"]).lower()
                    and _recipients_match(expected, "to", message.to)
                    and _recipients_match(expected, "cc", message.cc)
                    and ("email.subject" not in expected or message.subject == expected["email.subject"])
                )
                if not ok:
                    failures.append(case["id"])
            results[variant] = {"cases": len(cases), "passed": len(cases) - len(failures), "failures": failures}
    return {"ran": True, "variants": results}


def main(argv: list[str]) -> int:
    corpora = Path(argv[0]) if argv else corpora_root()
    report = evaluate(corpora)
    if not report["ran"]:
        print(f"forwarded/crisp as MIME: not run ({report['reason']})")
        return 0
    variants = report["variants"]
    assert isinstance(variants, dict)
    print(f"{'forwarded/crisp as MIME':<28} {'cases':>5} {'right':>6} {'share':>7}  (floor {FLOOR:.0%})")
    code = 0
    for variant, row in variants.items():
        share = row["passed"] / row["cases"] if row["cases"] else 1.0
        print(f"  {variant:<26} {row['cases']:>5} {row['passed']:>6} {share:>7.1%}")
        for case_id in row["failures"]:
            print(f"    FAIL {case_id}")
        if share < FLOOR and variant in FLOORED:
            code = 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
