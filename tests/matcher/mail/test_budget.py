"""The analysis budget: a message that cannot be analysed in time, or whose analysis process dies, is still
stored from its headers, and the analyser goes on serving the next message."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs in the lock file
import pytest

from services.matcher.mail.analysis import Analysis
from services.matcher.mail.budget import Analyser, degraded_analysis
from tests.support.stack import wait_for


def message(body: str, *, subject: str = "Quarterly numbers", headers: str = "") -> bytes:
    return (
        "From: Alice Example <alice@example.com>\r\nTo: Bob <bob@example.com>, carol@example.com\r\n"
        f"Subject: {subject}\r\nMessage-ID: <budget-1@example.com>\r\nIn-Reply-To: <earlier@example.com>\r\n"
        f"Date: Mon, 1 Dec 2025 10:00:00 +0000\r\n{headers}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


# Big but legal: twenty thousand reply-like lines for the quote and forward heuristics to read.
BIG_MESSAGE = message("On Mon, 1 Dec 2025 10:00 bob@example.com wrote:\n> yes\n" * 20_000, subject="Fwd: numbers")
ORDINARY = message("Hi Bob,\n\nthe numbers are attached.\n\nAlice")


@pytest.fixture
def analyser() -> Iterator[Analyser]:
    analyser = Analyser(time_limit_seconds=60, memory_limit_bytes=None)
    yield analyser
    analyser.close()


def assert_stored_from_headers(analysis: Analysis) -> None:
    mail = analysis.message.mail
    assert mail.message_id == "budget-1@example.com"
    assert mail.sender is not None
    assert mail.sender.address == "alice@example.com"
    assert [a.address for a in mail.to] == ["bob@example.com", "carol@example.com"]
    assert mail.references == ("earlier@example.com",)
    assert mail.sent_at is not None
    assert mail.sent_at.year == 2025
    assert any("stored with headers only" in defect for defect in mail.defects)


def test_ordinary_message_is_analysed_in_the_child(analyser: Analyser) -> None:
    [analysis] = analyser.analyse_all([ORDINARY])

    assert analysis.message.new_text == "Hi Bob,\n\nthe numbers are attached.\n\nAlice"
    assert analysis.message.mail.defects == ()


def test_message_past_the_time_budget_is_kept_with_its_headers(analyser: Analyser) -> None:
    analyser.time_limit_seconds = 0.05

    [analysis] = analyser.analyse_all([BIG_MESSAGE])

    assert_stored_from_headers(analysis)
    assert "analysis stopped after 0.05 s (time budget); stored with headers only" in analysis.message.mail.defects
    assert analysis.message.subject_key == "numbers"
    # The killed child is replaced: the next message is analysed in full.
    analyser.time_limit_seconds = 60
    [after] = analyser.analyse_all([ORDINARY])
    assert after.message.new_text is not None
    assert after.message.new_text.startswith("Hi Bob")


def test_messages_sent_ahead_of_one_past_its_budget_go_to_a_fresh_child() -> None:
    """A batch's small messages are sent to the child together; when one of them overruns its budget and the
    child is killed, the ones sent after it are analysed in full by the next child, each with its own budget."""
    analyser = Analyser(time_limit_seconds=0.05, memory_limit_bytes=None, pipelined_bytes=4 * len(BIG_MESSAGE))
    try:
        before, slow, after = analyser.analyse_all([ORDINARY, BIG_MESSAGE, ORDINARY])
    finally:
        analyser.close()

    assert before.message.new_text == after.message.new_text == "Hi Bob,\n\nthe numbers are attached.\n\nAlice"
    assert before.message.mail.defects == after.message.mail.defects == ()
    assert_stored_from_headers(slow)
    assert "analysis stopped after 0.05 s (time budget); stored with headers only" in slow.message.mail.defects


def test_child_that_dies_mid_message_yields_a_degraded_analysis(analyser: Analyser) -> None:
    analyser.analyse_all([ORDINARY])  # the child is running now
    [pid] = analyser.child_pids()
    results: list[Analysis] = []
    busy_since = _cpu_seconds(pid)
    worker = threading.Thread(target=lambda: results.extend(analyser.analyse_all([BIG_MESSAGE * 1])))
    worker.start()
    # Killed while it works on the message: killed before it got it, a fresh child would analyse it in full.
    wait_for(lambda: _cpu_seconds(pid) > busy_since + 0.05, timeout=60, what="the child to start on the message")
    os.kill(pid, signal.SIGKILL)
    worker.join(timeout=120)

    [analysis] = results
    assert_stored_from_headers(analysis)
    assert any("analysis process died" in defect for defect in analysis.message.mail.defects)
    [after] = analyser.analyse_all([ORDINARY])
    assert after.message.mail.defects == ()


def test_child_past_its_memory_limit_yields_a_degraded_analysis() -> None:
    probe = Analyser(time_limit_seconds=60, memory_limit_bytes=None)
    probe.analyse_all([ORDINARY])
    [pid] = probe.child_pids()
    baseline = _virtual_memory_bytes(pid)
    probe.close()
    # Room to run, but not to hold a 30 MB body several times over.
    analyser = Analyser(time_limit_seconds=120, memory_limit_bytes=baseline + 40 * 1024 * 1024)
    try:
        [analysis] = analyser.analyse_all([message("x" * 30_000_000)])
        assert_stored_from_headers(analysis)
        [after] = analyser.analyse_all([ORDINARY])
        assert after.message.mail.defects == ()
    finally:
        analyser.close()


def test_degraded_analysis_reads_only_a_bounded_header() -> None:
    hostile = message("body", headers="Cc: " + "(" * 5_000_000 + "\r\nX-Junk: " + "=?" * 3_000_000 + "\r\n")

    analysis = degraded_analysis(hostile, "analysis stopped after 10 s (time budget); stored with headers only")

    assert_stored_from_headers(analysis)
    assert analysis.message.mail.text_body is None


def _virtual_memory_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)
