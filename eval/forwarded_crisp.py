"""Measure `parse_forwarded` on the crisp email-forward-parser corpus (`shared/corpora/forwarded/crisp/`).

Each case in `expected.json` names a body file, an optional subject file, and dotted paths into
`{forwarded, message, email: {subject, date, body, from: {name, address}, to: [...], cc: [...]}}` whose values
must be strictly equal (`null` must be null, a missing element is never equal to anything). `email.date` is
localized by each client, so only "a non-empty string" is required of it.

The corpus is not part of this repository. When it is absent the evaluation says it was not run instead of
failing. Run as `python -m eval.forwarded_crisp [CORPORA_DIR]`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from services.matcher.mail.forwards import ForwardedAddress, ForwardParse, parse_forwarded

_DEFAULT_CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class _Missing:
    """A path that leads nowhere; unequal to every expected value, `null` included."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


@dataclass(frozen=True)
class _Mismatch:
    path: str
    expected: object
    actual: object


def evaluate(corpora: Path) -> dict[str, object]:
    """Run every case; `corpora` is the corpora root or the `forwarded/crisp` folder itself."""
    root = corpora if (corpora / "expected.json").is_file() else corpora / "forwarded" / "crisp"
    expected_file = root / "expected.json"
    if not expected_file.is_file():
        return {"cases": 0, "passed": 0, "failures": [], "ran": False, "reason": f"{expected_file} not found"}

    spec = json.loads(expected_file.read_bytes().decode("utf-8"))
    failures: list[str] = []
    details: dict[str, list[dict[str, object]]] = {}
    by_client: dict[str, list[int]] = {}
    for case in spec["cases"]:
        body = (root / case["body_file"]).read_bytes().decode("utf-8")
        subject_file = case.get("subject_file")
        subject = (root / subject_file).read_bytes().decode("utf-8") if subject_file else None
        mismatches = _check(parse_forwarded(body, subject), case["expected"])
        tally = by_client.setdefault(str(case.get("client", "?")), [0, 0])
        tally[0] += 1
        if mismatches:
            failures.append(case["id"])
            details[case["id"]] = [
                {"path": m.path, "expected": m.expected, "actual": repr(m.actual)} for m in mismatches
            ]
        else:
            tally[1] += 1
    cases = len(spec["cases"])
    return {
        "cases": cases,
        "passed": cases - len(failures),
        "failures": failures,
        "ran": True,
        "details": details,
        "by_client": {client: {"cases": n, "passed": ok} for client, (n, ok) in sorted(by_client.items())},
    }


def _check(result: ForwardParse, expected: dict[str, object]) -> list[_Mismatch]:
    tree = _as_tree(result)
    mismatches: list[_Mismatch] = []
    for path, want in expected.items():
        got = _resolve(tree, path)
        if not _matches(path, want, got):
            mismatches.append(_Mismatch(path=path, expected=want, actual=got))
    return mismatches


def _matches(path: str, want: object, got: object) -> bool:
    if path == "email.date":
        return isinstance(got, str) and got != ""
    # Strict: `True == 1` and `None` vs a missing element must not pass.
    return type(got) is type(want) and got == want


def _as_tree(result: ForwardParse) -> dict[str, object]:
    email = result.email
    return {
        "forwarded": result.forwarded,
        "message": result.message,
        "email": None
        if email is None
        else {
            "subject": email.subject,
            "date": email.date,
            "body": email.body,
            "from": _address(email.from_),
            "to": [_address(a) for a in email.to],
            "cc": [_address(a) for a in email.cc],
        },
    }


def _address(address: ForwardedAddress | None) -> dict[str, object] | None:
    return None if address is None else {"name": address.name, "address": address.address}


def _resolve(tree: object, path: str) -> object:
    node: object = tree
    for name, index in _PATH_TOKEN.findall(path):
        if index:
            position = int(index)
            if not isinstance(node, list) or position >= len(node):
                return _MISSING
            node = node[position]
        elif name == "length" and isinstance(node, list):
            node = len(node)
        elif isinstance(node, dict) and name in node:
            node = node[name]
        else:
            return _MISSING
    return node


def main(argv: list[str]) -> int:
    corpora = Path(argv[0]) if argv else Path(os.environ.get("MAILROOM_CORPORA", str(_DEFAULT_CORPORA)))
    report = evaluate(corpora)
    if not report["ran"]:
        print(f"forwarded/crisp: not run ({report['reason']})")
        return 0
    by_client = report["by_client"]
    assert isinstance(by_client, dict)
    print(f"{'client':<20} {'cases':>5} {'passed':>6}")
    for client, row in by_client.items():
        print(f"{client:<20} {row['cases']:>5} {row['passed']:>6}")
    print(f"{'total':<20} {report['cases']:>5} {report['passed']:>6}")
    details = report["details"]
    assert isinstance(details, dict)
    for case_id, mismatches in details.items():
        print(f"FAIL {case_id}")
        for mismatch in mismatches:
            print(f"     {mismatch['path']}: expected {mismatch['expected']!r}, got {mismatch['actual']}")
    return 0 if report["passed"] == report["cases"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
