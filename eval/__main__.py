"""`make eval`: every corpus evaluation, one table each; exits non-zero when any floor is missed.

The corpora live beside the repository (`../shared/corpora`, or MAILROOM_CORPORA); without them each
evaluation says it was not run and nothing fails.
"""

from __future__ import annotations

import importlib
import sys

from shared.logging import configure_logging

EVALUATIONS = (
    "eval.forwarded_crisp",
    "eval.forwarded_mime",
    "eval.reply_quotes",
    "eval.threading",
    "eval.zammad",
    "eval.mime_robustness",
)


def main() -> int:
    # The matcher logs every message; an evaluation only wants its tables.
    configure_logging("eval", level="WARNING")
    failed: list[str] = []
    for name in EVALUATIONS:
        print(f"\n== {name.removeprefix('eval.')} ==", flush=True)
        module = importlib.import_module(name)
        if module.main([]) != 0:
            failed.append(name)
    print()
    print("floors missed: " + ", ".join(failed) if failed else "all floors met (or corpora absent)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
