"""Measure services.matcher.mail.quotes on the public reply-quote corpora.

Run as ``python -m eval.reply_quotes [CORPORA_DIR]``.  The corpora are read
from ``../shared/corpora`` (relative to the repository) unless a directory is
given; when they are absent the evaluation says so and exits successfully,
because CI machines without the data must not fail.
"""

from __future__ import annotations

import email
import email.policy
import json
import pathlib
import re
import sys
from email.message import EmailMessage

from services.matcher.mail.quotes import extract_new_text, html_to_text

_DEFAULT_CORPORA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "corpora"
_REPLY_QUOTES = "reply-quotes"


def _decode(data: bytes) -> str:
    # Corpus files are bytes of unknown charset; UTF-8 first, then the
    # Windows superset of Latin-1 which never fails on real mail text.
    for charset in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace")


def _read_text(path: pathlib.Path) -> str:
    return _decode(path.read_bytes())


def _normalise(text: str) -> str:
    """Strip trailing whitespace on each line and surrounding blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _result(cases: int, failures: list[str], **extra: object) -> dict[str, object]:
    result: dict[str, object] = {"cases": cases, "passed": cases - len(failures), "failures": failures}
    result.update(extra)
    return result


def _message_text(raw: bytes) -> str:
    if raw.startswith(b"From "):
        # An mbox envelope line is not a header; the parser would choke on it.
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    plain = message.get_body(preferencelist=("plain",))
    if plain is not None:
        return str(plain.get_content())
    html = message.get_body(preferencelist=("html",))
    if html is not None:
        return html_to_text(str(html.get_content()))
    return ""


def evaluate_talon(root: pathlib.Path) -> dict[str, object]:
    """talon's standard replies: raw .eml in, expected reply text out.

    talon's ``extract_from_plain`` removes quotations only; it leaves the
    signature to a separate step, so two of its expectations still contain
    one ("Sent from my iPhone", a "-- " block).  ``extract_new_text`` is
    specified to drop signatures, so for those cases the expectation is the
    talon text with its signature removed - obtained by running it through
    ``extract_new_text``, which, the expectation containing no quotation,
    can only remove the signature.  Those cases are listed in
    ``signature_adjusted``; ``strict_passed`` counts exact talon semantics.
    """
    spec = json.loads(_read_text(root / "expected_standard_replies.json"))
    failures: list[str] = []
    adjusted: list[str] = []
    strict_passed = 0
    for case in spec["cases"]:
        name = pathlib.Path(case["file"]).stem
        body = _message_text((root / case["file"]).read_bytes())
        got = _normalise(extract_new_text(body))
        # talon's test strips the expected file and compares exactly; we
        # also ignore trailing blanks on each line (talon keeps "Hello ").
        expected = _normalise(case["expected_reply_text"])
        if got == expected:
            strict_passed += 1
            continue
        without_signature = _normalise(extract_new_text(expected))
        if without_signature != expected and got == without_signature:
            adjusted.append(name)
            continue
        failures.append(name)
    return _result(len(spec["cases"]), failures, signature_adjusted=adjusted, strict_passed=strict_passed)


def evaluate_talon_html(root: pathlib.Path) -> dict[str, object]:
    """talon's HTML replies, through ``html_to_text`` then ``extract_new_text``.

    talon compares with all whitespace removed; so do we.
    """
    expected = re.sub(r"\s+", "", "Hi. I am fine.\n\nThanks,\nAlex")
    paths = sorted((root / "fixtures" / "html_replies").glob("*.html"))
    failures = [
        path.stem for path in paths if re.sub(r"\s+", "", extract_new_text(html_to_text(_read_text(path)))) != expected
    ]
    return _result(len(paths), failures)


def evaluate_discourse(root: pathlib.Path) -> dict[str, object]:
    paths = sorted((root / "emails").glob("*.txt"))
    failures: list[str] = []
    for path in paths:
        expected = _normalise(_read_text(root / "trimmed" / path.name))
        if _normalise(extract_new_text(_read_text(path))) != expected:
            failures.append(path.stem)
    return _result(len(paths), failures)


def evaluate_crisp(root: pathlib.Path) -> dict[str, object]:
    """The cases whose upstream assertion is ``fragments[0].trim() == COMMON``.

    The first fragment is the reply before any quote header, quote or
    signature, i.e. what extract_new_text returns.  Other upstream tests
    are structural (fragment counts, flags) and are not measured here.
    """
    spec = json.loads(_read_text(root / "expected_first_fragment.json"))
    expected = _normalise(spec["expected_first_fragment"])
    failures: list[str] = []
    for case in spec["cases"]:
        path = root / case["fixture"]
        if _normalise(extract_new_text(_read_text(path))) != expected:
            failures.append(path.stem)
    return _result(len(spec["cases"]), failures)


def evaluate(corpora: pathlib.Path) -> dict[str, dict[str, object]]:
    base = corpora / _REPLY_QUOTES
    return {
        "talon": evaluate_talon(base / "mailgun-talon"),
        "discourse": evaluate_discourse(base / "discourse-email_reply_trimmer"),
        "crisp": evaluate_crisp(base / "crisp-email-reply-parser"),
    }


def _print_table(results: dict[str, dict[str, object]]) -> None:
    print(f"{'corpus':<12} {'passed':>6} / {'cases':<5}  failures")
    for name, result in results.items():
        failures = result["failures"]
        assert isinstance(failures, list)
        listed = ", ".join(str(f) for f in failures) or "-"
        print(f"{name:<12} {result['passed']!s:>6} / {result['cases']!s:<5}  {listed}")
        for key, value in result.items():
            if key not in ("cases", "passed", "failures"):
                print(f"{'':<12} {key}: {value}")


# The floors: talon 12/12, discourse `trimmed/` exact in at least 90% of the cases.
DISCOURSE_FLOOR = 0.9


def main(argv: list[str]) -> int:
    corpora = pathlib.Path(argv[0]) if argv else _DEFAULT_CORPORA
    if not (corpora / _REPLY_QUOTES).is_dir():
        print(f"reply-quotes evaluation not run: {corpora / _REPLY_QUOTES} not found")
        return 0
    results = evaluate(corpora)
    results_html = {"talon-html": evaluate_talon_html(corpora / _REPLY_QUOTES / "mailgun-talon")}
    _print_table(results)
    print()
    print("supplementary (html_to_text):")
    _print_table(results_html)
    talon, discourse = results["talon"], results["discourse"]
    talon_ok = talon["passed"] == talon["cases"]
    discourse_ok = int(str(discourse["passed"])) >= DISCOURSE_FLOOR * int(str(discourse["cases"]))
    return 0 if talon_ok and discourse_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
