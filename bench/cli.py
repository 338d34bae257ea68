"""Command line and report: for each size, push the same load into every target and print one table."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
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
    gather_statistics,
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
    matcher_idle: float = 0.0  # CPU seconds the idle worker processes would have spent over the same time

    @property
    def end_to_end_rate(self) -> float | None:
        """Messages per second from the first MAIL to the last message visible in the API, if all became visible."""
        visibility = self.visibility
        if visibility is None or visibility.last_seen is None or visibility.invisible:
            return None
        return self.push.accepted / max(visibility.last_seen - self.push.started, 1e-9)


IDLE_SAMPLE_SECONDS = 2.0


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
    parser.add_argument(
        "--rate",
        metavar="MSG_PER_S|half",
        help="also push Mailroom at a steady rate and report 250→API latency; `half` is half of the end-to-end"
        " rate the burst reached in this run",
    )
    parser.add_argument(
        "--dns-latency",
        type=float,
        metavar="MS",
        help="check every sender (SPF, DKIM, DMARC) against a local DNS server answering after MS milliseconds;"
        " without it the bench turns sender checks off",
    )
    parser.add_argument("--profile-gateway", type=Path, metavar="FILE", help="run the gateway under cProfile")
    parser.add_argument(
        "--profile-matcher",
        type=Path,
        metavar="FILE",
        help="sample the worker processes with py-spy during the burst (collapsed stacks) and summarize them",
    )
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
    if args.profile_matcher is not None and args.profile_matcher.exists():
        print(matcher_profile_summary(args.profile_matcher))
    return 0


def _run(args: argparse.Namespace, work_dir: Path, runner: asyncio.Runner) -> None:
    run_id = new_run_id()
    with contextlib.ExitStack() as servers:
        room = servers.enter_context(
            mailroom(
                work_dir,
                run_id,
                profile_to=args.profile_gateway,
                pipeline=not args.accept_only,
                dns_latency=None if args.dns_latency is None else args.dns_latency / 1000,
            )
        )
        references = [servers.enter_context(sink("raw")), servers.enter_context(sink("aiosmtpd"))]
        postfix = find_postfix(args.postfix, args.postfix_rcpt)
        print(_preamble(args, room, postfix), flush=True)
        for size in args.sizes:
            factory = MessageFactory(size, f"{run_id}-{size}", room.user_email)
            rows = [runner.run(_measure_smtp(target, factory, args)) for target in references]
            burst: Row | None = None
            if args.accept_only:
                rows.append(runner.run(_measure_smtp(room.smtp, factory, args)))
            else:
                burst = runner.run(_measure_mailroom(room, factory, args))
                rows.append(burst)
            if postfix is not None:
                rows.append(runner.run(_measure_smtp(postfix, factory, args)))
                wait_for_postfix_queue()
            rate = _paced_rate(args.rate, burst)
            if rate is not None:
                numbers = range(args.warmup + args.messages, args.warmup + 2 * args.messages)
                rows.append(runner.run(_measure_mailroom(room, factory, args, numbers=numbers, rate=rate)))
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
            "  senders   not checked (no DNS)"
            if args.dns_latency is None
            else f"  senders   checked (SPF, DKIM, DMARC) against a DNS server answering after {args.dns_latency:g} ms",
        ]
    )


async def _measure_smtp(target: SmtpTarget, factory: MessageFactory, args: argparse.Namespace) -> Row:
    await _push(target, factory, args, range(args.warmup))
    before = cpu_times(target.pids, target.database)
    result = await _push(target, factory, args, range(args.warmup, args.warmup + args.messages))
    return Row(target.name, result, cpu_times(target.pids, target.database) - before)


def _paced_rate(requested: str | None, burst: Row | None) -> float | None:
    if requested is None or burst is None:
        return None
    if requested == "half":
        sustained = burst.end_to_end_rate
        return sustained / 2 if sustained else None
    return float(requested)


async def _measure_mailroom(
    room: Mailroom,
    factory: MessageFactory,
    args: argparse.Namespace,
    *,
    numbers: range | None = None,
    rate: float | None = None,
) -> Row:
    """A burst (or, with `rate`, a steady push) into Mailroom, tracked until every message is visible.

    CPU is counted until the last message is visible, not only while pushing: the matcher's work is the point."""
    target = room.smtp
    matcher = (room.stack.processes["worker"].process.pid,)
    api = (room.stack.processes["api"].process.pid,)

    def settled() -> bool:
        return inbound_statuses(room)[0].get("received", 0) == 0

    if numbers is None:
        # Warm up and wait until the warm-up mail is visible, so the measured push starts with an idle matcher.
        warmup = VisibilityTracker(room.stack.api_url, room.api_token, poll_interval=args.poll_interval)
        await warmup.catch_up()
        await _push(target, factory, args, range(args.warmup), warmup)
        await warmup.track(asyncio.Event(), straggler_seconds=args.visible_timeout, settled=settled)
        await warmup.aclose()
        await asyncio.to_thread(gather_statistics, room)
        numbers = range(args.warmup, args.warmup + args.messages)

    # The idle workers' own cost (queue polling), so that a slow run's long tail is not billed to its messages.
    idle_start = cpu_times((), None, matcher)
    await asyncio.sleep(IDLE_SAMPLE_SECONDS)
    idle_rate = (cpu_times((), None, matcher) - idle_start).matcher / IDLE_SAMPLE_SECONDS
    profiler = _start_profiler(args.profile_matcher, matcher) if rate is None else None
    tracker = VisibilityTracker(room.stack.api_url, room.api_token, poll_interval=args.poll_interval)
    await tracker.catch_up()
    pushing = asyncio.Event()
    pushing.set()
    before = cpu_times(target.pids, target.database, matcher, api)
    tracking = asyncio.create_task(tracker.track(pushing, straggler_seconds=args.visible_timeout, settled=settled))
    try:
        result = await _push(target, factory, args, numbers, tracker, rate=rate)
    finally:
        pushing.clear()
        visibility = await tracking
        cpu = cpu_times(target.pids, target.database, matcher, api) - before
        await tracker.aclose()
        if profiler is not None:
            _stop_profiler(profiler)
    statuses, reason = inbound_statuses(room)
    name = target.name if rate is None else f"mailroom paced {rate:,.0f}/s"
    end = visibility.last_seen or time.monotonic()
    return Row(name, result, cpu, visibility, statuses, reason, idle_rate * (end - result.started))


def _start_profiler(path: Path | None, pids: tuple[int, ...]) -> subprocess.Popen[bytes] | None:
    if path is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    # Only threads holding the GIL: the CPU spent in Python, not the time spent waiting on Postgres or Redis.
    command = [py_spy, "record", "--format", "raw", "--output", str(path), "--rate", "200", "--nonblocking"]
    command += ["--gil"]
    command += ["--subprocesses", "--pid", str(pids[0])]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
    try:
        profiler.wait(timeout=30)
    except subprocess.TimeoutExpired:
        profiler.kill()


async def _push(
    target: SmtpTarget,
    factory: MessageFactory,
    args: argparse.Namespace,
    numbers: range,
    tracker: VisibilityTracker | None = None,
    *,
    rate: float | None = None,
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
        rate=rate,
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
    postfix_rate = next((row.push.rate for row in rows if row.name == "postfix"), 0.0)
    for row in rows:
        if row.visibility is not None:
            notes.append(f"  {row.name}:")
            notes.append(_visibility_note(row.visibility, args.poll_interval))
            notes.append(_end_to_end_note(row, postfix_rate))
            if row.cpu.matcher and row.push.accepted:
                per = 1e6 / row.push.accepted
                notes.append(
                    f"  matcher CPU µs/msg (until the last is visible): worker {row.cpu.matcher * per:,.0f}"
                    f" ({(row.cpu.matcher - row.matcher_idle) * per:,.0f} beyond its idle polling;"
                    f" {row.cpu.matcher_analysis * per:,.0f} of it in analysis processes),"
                    f" its Postgres backends {row.cpu.matcher_postgres * per:,.0f}"
                )
                notes.append(
                    f"  API CPU µs/msg answering the poller: {row.cpu.api * per:,.0f}"
                    f" ({len(row.visibility.poll_seconds)} poll rounds)"
                )
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


def _end_to_end_note(row: Row, postfix_rate: float) -> str:
    sustained = row.end_to_end_rate
    if sustained is None:
        return "  end to end: not every message became visible"
    note = f"  end to end (first MAIL → last message visible): {sustained:,.0f} msg/s"
    if postfix_rate:
        note += f" = {sustained / postfix_rate:.2f}× Postfix's accept rate in this run"
    return note


def matcher_profile_summary(path: Path, limit: int = 30) -> str:
    """Where the worker processes spent their samples: by layer, and the functions that used the most CPU."""
    layers = {
        "analysis (services/matcher/mail)": "services/matcher/mail/",
        "placement (pipeline, placement)": "services/matcher/p",
        "SQLAlchemy": "sqlalchemy/",
        "psycopg": "psycopg/",
        "dramatiq / redis": "dramatiq/",
    }
    total = 0
    by_layer: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[_frame_name(frames[-1])] += samples
        # Attribute each sample to the innermost layer it is in: parse time is parse time, even under the pipeline.
        for frame in reversed(frames):
            layer = next((name for name, marker in layers.items() if marker in frame), None)
            if layer is not None:
                by_layer[layer] += samples
                break
        else:
            by_layer["other"] += samples
    lines = [f"\nmatcher profile ({path}; py-spy collapsed stacks, {total} samples of threads holding the GIL)"]
    lines += [f"  {samples / max(total, 1):6.1%}  {layer}" for layer, samples in by_layer.most_common()]
    lines.append("  own time (innermost frame):")
    lines += [f"  {samples / max(total, 1):6.1%}  {name}" for name, samples in own.most_common(limit)]
    return "\n".join(lines)


def _frame_name(frame: str) -> str:
    # py-spy's raw frames read "function (path/to/file.py:line)"; the line is dropped so a function counts once.
    function, _, where = frame.partition(" (")
    return f"{function} ({where.rsplit(':', 1)[0]})" if where else function


def _visibility_note(visibility: VisibilityResult, poll_interval: float) -> str:
    rounds = sorted(visibility.poll_seconds)
    typical = rounds[len(rounds) // 2] if rounds else 0.0
    note = (
        f"  250→API: {len(visibility.latencies)}/{visibility.expected} seen by the poller of the message feed;"
        f" resolution ≈ {(poll_interval + typical) * 1000:.0f} ms (poll every {poll_interval * 1000:.0f} ms,"
        f" median round {typical * 1000:.0f} ms)"
    )
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
