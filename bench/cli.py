"""Command line and report: for each size, push the same load into every target and print one table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pstats
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench.cpu import CpuTimes, cpu_times
from bench.mail import MessageFactory, new_run_id
from bench.smtp import PushResult, push
from bench.targets import (
    Mailroom,
    SmtpTarget,
    find_postfix,
    inbound_statuses,
    mailroom,
    postgres_durability,
    sink,
    wait_for_postfix_queue,
)
from bench.visibility import VisibilityResult, VisibilityTracker
from shared.settings import Settings


@dataclass(frozen=True)
class Row:
    name: str
    push: PushResult
    cpu: CpuTimes
    visibility: VisibilityResult | None = None
    statuses: dict[str, int] | None = None  # Mailroom's inbound rows of this account so far, by status
    not_placed: str | None = None  # why one of them was held or failed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=500, help="messages per target and size (default 500)")
    parser.add_argument("--sizes", default="2048,102400", help="comma-separated message sizes in bytes")
    parser.add_argument("--size", type=int, help="a single message size (overrides --sizes)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent SMTP connections (default 16)")
    parser.add_argument("--per-session", type=int, default=50, help="messages per SMTP connection (default 50)")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured messages first, per target and size")
    parser.add_argument("--poll-interval", type=float, default=0.05, help="seconds between API polls")
    parser.add_argument("--visible-timeout", type=float, default=60, help="seconds to wait for stragglers")
    parser.add_argument(
        "--postfix",
        default="127.0.0.1:25",
        metavar="HOST:PORT|off",
        help="also measure this Postfix when `postfix` is installed and it answers there (default 127.0.0.1:25)",
    )
    parser.add_argument(
        "--postfix-rcpt", default="bench@localhost", help="a Postfix recipient delivered cheaply, e.g. to /dev/null"
    )
    parser.add_argument(
        "--accept-only",
        action="store_true",
        help="run only Mailroom's gateway (no worker, no API): accept rates without the matcher competing for CPU",
    )
    parser.add_argument("--profile-gateway", type=Path, metavar="FILE", help="run the gateway under cProfile")
    parser.add_argument("--keep", action="store_true", help="keep the service logs and data directory")
    args = parser.parse_args(argv)
    args.sizes = [args.size] if args.size else [int(size) for size in args.sizes.split(",")]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work_dir = Path(tempfile.mkdtemp(prefix="mailroom-bench-"))
    failed = True
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            _run(args, work_dir, runner)
        failed = False
    finally:
        if args.keep or failed:
            print(f"service logs and data: {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    if args.profile_gateway is not None:
        print(profile_summary(args.profile_gateway))
    return 0


def _run(args: argparse.Namespace, work_dir: Path, runner: asyncio.Runner) -> None:
    run_id = new_run_id()
    with contextlib.ExitStack() as servers:
        room = servers.enter_context(
            mailroom(work_dir, run_id, profile_to=args.profile_gateway, pipeline=not args.accept_only)
        )
        references = [servers.enter_context(sink("raw")), servers.enter_context(sink("aiosmtpd"))]
        postfix = find_postfix(args.postfix, args.postfix_rcpt)
        print(_preamble(args, room, postfix), flush=True)
        for size in args.sizes:
            factory = MessageFactory(size, f"{run_id}-{size}", room.user_email)
            rows = [runner.run(_measure_smtp(target, factory, args)) for target in references]
            if args.accept_only:
                rows.append(runner.run(_measure_smtp(room.smtp, factory, args)))
            else:
                rows.append(runner.run(_measure_mailroom(room, factory, args)))
            if postfix is not None:
                rows.append(runner.run(_measure_smtp(postfix, factory, args)))
                wait_for_postfix_queue()
            print(render_table(factory, args, rows), flush=True)


def _preamble(args: argparse.Namespace, room: Mailroom, postfix: SmtpTarget | None) -> str:
    settings = Settings()  # what the service processes read from the same environment
    postfix_is = f"{postfix.host}:{postfix.port}" if postfix else "not measured (not installed or not answering)"
    return "\n".join(
        [
            f"Mailroom bench: {args.messages} messages per target and size, {args.concurrency} connections,"
            f" {args.per_session} messages per connection, {os.cpu_count()} CPUs",
            f"  servers   {room.servers}; {postgres_durability(room.database_url)}",
            "  mailroom  gateway only (--accept-only)"
            if args.accept_only
            else f"  mailroom  gateway, worker ({settings.worker_processes} processes × {settings.worker_threads}"
            " threads), api: separate processes",
            f"  postfix   {postfix_is}",
        ]
    )


async def _measure_smtp(target: SmtpTarget, factory: MessageFactory, args: argparse.Namespace) -> Row:
    await _push(target, factory, args, range(args.warmup))
    before = cpu_times(target.pids, target.database)
    result = await _push(target, factory, args, range(args.warmup, args.warmup + args.messages))
    return Row(target.name, result, cpu_times(target.pids, target.database) - before)


async def _measure_mailroom(room: Mailroom, factory: MessageFactory, args: argparse.Namespace) -> Row:
    target = room.smtp

    def settled() -> bool:
        return inbound_statuses(room)[0].get("received", 0) == 0

    # Warm up and wait until the warm-up mail is visible, so the measured push starts with an idle matcher.
    warmup = VisibilityTracker(room.stack.api_url, room.api_token, poll_interval=args.poll_interval)
    await _push(target, factory, args, range(args.warmup), warmup)
    await warmup.track(asyncio.Event(), straggler_seconds=args.visible_timeout, settled=settled)
    await warmup.aclose()

    tracker = VisibilityTracker(room.stack.api_url, room.api_token, poll_interval=args.poll_interval)
    pushing = asyncio.Event()
    pushing.set()
    before = cpu_times(target.pids, target.database)
    tracking = asyncio.create_task(tracker.track(pushing, straggler_seconds=args.visible_timeout, settled=settled))
    try:
        result = await _push(target, factory, args, range(args.warmup, args.warmup + args.messages), tracker)
        cpu = cpu_times(target.pids, target.database) - before
    finally:
        pushing.clear()
        visibility = await tracking
        await tracker.aclose()
    statuses, reason = inbound_statuses(room)
    return Row(target.name, result, cpu, visibility, statuses, reason)


async def _push(
    target: SmtpTarget,
    factory: MessageFactory,
    args: argparse.Namespace,
    numbers: range,
    tracker: VisibilityTracker | None = None,
) -> PushResult:
    def accepted(number: int, accepted_at: float, _reply: bytes) -> None:
        if tracker is not None:
            tracker.expect(factory.message_id(number), accepted_at)

    return await push(
        target.host,
        target.port,
        recipient=target.recipient,
        factory=factory,
        numbers=numbers,
        concurrency=args.concurrency,
        per_session=args.per_session,
        on_accepted=accepted,
    )


def render_table(factory: MessageFactory, args: argparse.Namespace, rows: list[Row]) -> str:
    reference = next((row.push.rate for row in rows if row.name == "bare aiosmtpd"), 0.0)
    header = (
        "target",
        "accepted",
        "failed",
        "msg/s",
        "vs aiosmtpd",
        "MAIL→250 ms p50/p95",
        "250→API ms p50/p95/max",
        "CPU µs/msg server/pg",
        "client CPU",
    )
    lines = [header]
    for row in rows:
        failed = sum(row.push.rejected.values()) + row.push.connection_errors
        lines.append(
            (
                row.name,
                f"{row.push.accepted}/{row.push.attempted}",
                str(failed),
                f"{row.push.rate:,.0f}",
                f"{row.push.rate / reference:.2f}×" if reference else "-",
                _ms(row.push.transaction_seconds, (50, 95)),
                _ms(row.visibility.latencies, (50, 95, 100)) if row.visibility else "-",
                _cpu_per_message(row),
                f"{row.cpu.client / row.push.seconds:.0%}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    table = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    notes = [f"\n{factory.wire_size():,} bytes per message ({args.concurrency} connections)"]
    notes += table
    for row in rows:
        if row.visibility is not None:
            notes.append(_visibility_note(row.visibility, args.poll_interval))
        if row.statuses is not None:
            counts = ", ".join(f"{status} {count}" for status, count in sorted(row.statuses.items()))
            notes.append(f"  inbound rows so far (warm-up included): {counts}")
        if row.not_placed:
            notes.append(f"  one held or failed: {row.not_placed[:300]}")
        if row.push.rejected:
            notes.append(f"  {row.name} rejected: {row.push.rejected}")
    if any(row.visibility is not None for row in rows):
        notes.append(
            "  the worker and API share the CPUs with the gateway here; --accept-only measures the gateway alone"
        )
    ceiling = next((row.push.rate for row in rows if row.name.startswith("raw sink")), 0.0)
    if ceiling and reference > 0.7 * ceiling:
        notes.append("  warning: bare aiosmtpd is within 30% of the client ceiling; the client may set the pace")
    return "\n".join(notes)


def _cpu_per_message(row: Row) -> str:
    if not row.push.accepted:
        return "-"
    server = f"{row.cpu.server / row.push.accepted * 1e6:,.0f}" if row.cpu.server else "-"
    return f"{server} / {row.cpu.postgres / row.push.accepted * 1e6:,.0f}"


def _visibility_note(visibility: VisibilityResult, poll_interval: float) -> str:
    rounds = sorted(visibility.poll_seconds)
    typical = rounds[len(rounds) // 2] if rounds else 0.0
    note = (
        f"  250→API: {len(visibility.latencies)}/{visibility.expected} seen by the poller;"
        f" resolution ≈ {(poll_interval + typical) * 1000:.0f} ms (poll every {poll_interval * 1000:.0f} ms,"
        f" median round {typical * 1000:.0f} ms)"
    )
    if visibility.missed_by_poller:
        # Either committed after the last poll or overtaken past the pages a poll reads: no latency for them.
        note += f"; {visibility.missed_by_poller} found only by the final full scan"
    if visibility.invisible:
        note += f"; {visibility.invisible} NOT VISIBLE after the timeout"
    return note


def _ms(seconds: list[float], percentiles: tuple[int, ...]) -> str:
    if not seconds:
        return "-"
    ordered = sorted(seconds)
    # Nearest rank: every reported value is one that was actually measured.
    picks = [ordered[max(0, -(-p * len(ordered) // 100) - 1)] for p in percentiles]
    return " / ".join(f"{value * 1000:,.0f}" if value >= 0.01 else f"{value * 1000:.1f}" for value in picks)


def profile_summary(path: Path, limit: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    out.write(f"\ngateway profile ({path}; open with `python -m pstats {path}`)\n")
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(r"smtp_gateway|aiosmtpd|psycopg|structlog|dramatiq", limit)
    return out.getvalue()
