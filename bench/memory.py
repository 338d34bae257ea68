"""Peak memory of one matcher worker analysing 25 MB messages of different shapes.

    python -m bench.memory            # every shape, one table
    python -m bench.memory --size-mb 5

Each shape runs in a fresh process (the worker's side) with the production `Analyser` (its child process, the
settings' time and memory limits), so the peaks are per shape: the parent's and the analysis child's highest
resident set (VmHWM). A shape past the time budget shows as `degraded` (stored from its headers).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

HEADER = (
    "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: memory\r\n"
    "Message-ID: <memory@example.com>\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
)


def one_text_part(size: int) -> bytes:
    line = "the quick brown fox jumps over the lazy dog, again and again and again\r\n"
    return (HEADER + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + line * (size // len(line))).encode()


def deep_html(size: int) -> bytes:
    unit = "<blockquote><div>quoted text<br>"
    return (HEADER + "Content-Type: text/html; charset=utf-8\r\n\r\n" + unit * (size // len(unit))).encode()


def many_tiny_parts(size: int, parts: int = 5_000) -> bytes:
    filler = "x" * max(1, size // parts - 60)
    body = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\n{filler}\r\n" for _ in range(parts))
    return (HEADER + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body + "--b--\r\n").encode()


def deeply_nested(size: int, depth: int = 1_000) -> bytes:
    opening = "".join(f'--n{i}\r\nContent-Type: multipart/mixed; boundary="n{i + 1}"\r\n\r\n' for i in range(depth))
    text = "nested text line\r\n" * (size // 18)
    closing = "".join(f"--n{i}--\r\n" for i in reversed(range(depth + 1)))
    head = HEADER + 'Content-Type: multipart/mixed; boundary="n0"\r\n\r\n'
    return (head + opening + f"--n{depth}\r\nContent-Type: text/plain\r\n\r\n" + text + closing).encode()


def base64_attachment(size: int) -> bytes:
    encoded = base64.encodebytes(bytes(range(256)) * (size * 3 // 4 // 256)).decode().replace("\n", "\r\n")
    return (
        HEADER
        + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n'
        + '--b\r\nContent-Type: application/octet-stream; name="data.bin"\r\nContent-Transfer-Encoding: base64\r\n'
        + 'Content-Disposition: attachment; filename="data.bin"\r\n\r\n'
        + encoded
        + "--b--\r\n"
    ).encode()


def huge_header(size: int) -> bytes:
    folded = "\r\n ".join("recipient-with-a-long-name@example.com," for _ in range(size // 44))
    return (HEADER + f"Cc: {folded}\r\nContent-Type: text/plain\r\n\r\nhello\r\n").encode()


SHAPES: dict[str, Callable[[int], bytes]] = {
    "one huge text part": one_text_part,
    "huge deeply nested HTML": deep_html,
    "5,000 tiny parts": many_tiny_parts,
    "multipart nested 1,000 deep": deeply_nested,
    "huge base64 attachment": base64_attachment,
    "huge Cc header": huge_header,
}


def peak_rss_bytes(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(shape: str, size: int) -> dict[str, object]:
    """One shape, in this process: what a worker does with one message."""
    from services.matcher.mail.budget import Analyser
    from shared.settings import Settings

    raw = SHAPES[shape](size)
    analyser = Analyser.from_settings(Settings())
    child_peak = 0
    done = threading.Event()

    def sample() -> None:  # a killed child cannot be asked afterwards: watch it while it works
        nonlocal child_peak
        while not done.wait(0.05):
            for pid in analyser.child_pids():
                with contextlib.suppress(OSError):
                    child_peak = max(child_peak, peak_rss_bytes(pid))

    try:
        analyser.analyse_all([b"From: warm@example.com\r\n\r\nstart the child\r\n"])
        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        [analysis] = analyser.analyse_all([raw])
        seconds = time.perf_counter() - started
        for pid in analyser.child_pids():
            child_peak = max(child_peak, peak_rss_bytes(pid))
        done.set()
        sampler.join()
    finally:
        done.set()
        analyser.close()
    degraded = any("stored with headers only" in defect for defect in analysis.message.mail.defects)
    return {
        "shape": shape,
        "bytes": len(raw),
        "seconds": round(seconds, 1),
        "outcome": "degraded" if degraded else "full",
        # Sampled every 50 ms while it worked (a child killed at the budget is gone afterwards).
        "child_peak_mb": round(child_peak / 2**20),
        "parent_peak_mb": round(peak_rss_bytes("self") / 2**20),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=25)
    parser.add_argument("--shape", help=argparse.SUPPRESS)  # one shape, run in a fresh process by the table
    args = parser.parse_args()
    size = int(args.size_mb * 2**20)
    if args.shape:
        print(json.dumps(measure(args.shape, size)))
        return 0
    print(f"{'shape':30} {'MB':>5} {'seconds':>8} {'outcome':>9} {'child peak MB':>14} {'parent peak MB':>15}")
    for shape in SHAPES:
        command = [sys.executable, "-m", "bench.memory", "--size-mb", str(args.size_mb), "--shape", shape]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(f"{shape:30} failed: {result.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(result.stdout)
        child = row["child_peak_mb"]
        print(
            f"{shape:30} {row['bytes'] / 2**20:5.1f} {row['seconds']:8} {row['outcome']:>9} {child:>14}"
            f" {row['parent_peak_mb']:>15}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
