"""What reading one message costs, step by step: the email package's tree, mail-parser, our parse, the analysis.

    python -m bench.parsing [--messages 200] [--sizes 2048,102400] [--corpus DIR]

Each row is CPU milliseconds per message (the best of `--repeat` passes over the same messages, since the machine
is shared): the bench's own messages at each size, and, with `--corpus`, every `.eml`/`.msg` file under a directory
(`../shared/corpora` holds real-world mail). The analysis is what the matcher's analysis processes run per message;
the difference between mail-parser's `parse_from_bytes` and the email package's tree is the work mail-parser does
beyond the tree (addresses, bodies, Received headers), which the matcher does again its own way and so skips.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import mailparser

from bench.mail import MessageFactory, new_run_id
from services.matcher.mail.analysis import analyse
from services.matcher.mail.parsing import parse_mail

MAIL_SUFFIXES = {".eml", ".msg"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parsing", description=__doc__)
    parser.add_argument("--messages", type=int, default=200, help="bench messages per size (default 200)")
    parser.add_argument("--sizes", default="2048,102400", help="comma-separated message sizes in bytes")
    parser.add_argument("--corpus", type=Path, help="also measure every .eml and .msg file under this directory")
    parser.add_argument("--repeat", type=int, default=3, help="passes per step; the fastest counts (default 3)")
    args = parser.parse_args(argv)
    logging.getLogger("mailparser").setLevel(logging.CRITICAL)  # it logs every part type it does not handle

    inputs: list[tuple[str, list[bytes]]] = []
    for size in (int(size) for size in args.sizes.split(",")):
        factory = MessageFactory(size, new_run_id(), "sam@bench.example")
        inputs.append((f"bench {factory.wire_size()} B", [_raw(factory, n) for n in range(args.messages)]))
    if args.corpus is not None:
        files = sorted(path for path in args.corpus.rglob("*") if path.suffix in MAIL_SUFFIXES and path.is_file())
        inputs.append((f"corpus ({len(files)} files)", [path.read_bytes() for path in files]))

    steps: list[tuple[str, Callable[[bytes], object]]] = [
        ("email package tree", _stdlib_tree),
        ("mail-parser parse_from_bytes", _mail_parser),
        ("parse_mail (ours)", parse_mail),
        ("analyse (parse + classify, quotes, forwards)", analyse),
    ]
    width = max(len(name) for name, _ in steps)
    print(f"CPU ms per message, best of {args.repeat}")
    print(f"{'':{width}} " + " ".join(f"{name:>24}" for name, _ in inputs))
    for step_name, step in steps:
        costs = [_cost(step, raws, args.repeat) for _, raws in inputs]
        print(f"{step_name:{width}} " + " ".join(f"{1000 * cost:24.3f}" for cost in costs))
    return 0


def _raw(factory: MessageFactory, number: int) -> bytes:
    wire = b"".join(factory.parts(number))
    return wire[: -len(b".\r\n")]


def _stdlib_tree(raw: bytes) -> object:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _mail_parser(raw: bytes) -> object:
    try:
        return mailparser.parse_from_bytes(raw)
    except Exception as error:  # some corpus mail makes it raise; the matcher would not call it there either
        return error


def _cost(step: Callable[[bytes], object], raws: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for raw in raws:
            step(raw)
        best = min(best, (time.process_time() - started) / max(len(raws), 1))
    return best


if __name__ == "__main__":
    raise SystemExit(main())
