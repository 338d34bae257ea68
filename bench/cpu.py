"""CPU seconds spent by the server under test, by Postgres and by the bench's own client during one push.

On a two-core machine a rate means little without them: they tell a server that waits (on fsync, on a lock)
from one that is out of CPU, and show whether the client had a core to spare.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]  # no stubs in the lock file


@dataclass(frozen=True)
class CpuTimes:
    server: float
    postgres: float
    client: float
    matcher: float = 0.0  # the worker processes (Mailroom only)
    matcher_postgres: float = 0.0  # the Postgres backends the worker processes are connected to
    matcher_analysis: float = 0.0  # the worker's analysis processes (part of `matcher`)
    api: float = 0.0  # the API process, answering the bench's visibility poller

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(
            self.server - other.server,
            self.postgres - other.postgres,
            self.client - other.client,
            self.matcher - other.matcher,
            self.matcher_postgres - other.matcher_postgres,
            self.matcher_analysis - other.matcher_analysis,
            self.api - other.api,
        )


def cpu_times(
    server_pids: tuple[int, ...],
    database: str | None,
    matcher_pids: tuple[int, ...] = (),
    api_pids: tuple[int, ...] = (),
) -> CpuTimes:
    """`database` picks the Postgres backends to count; None counts none (the server under test has no database).

    `postgres` counts every backend of the database (gateway, matcher and API); `matcher_postgres` those whose
    client socket belongs to one of the matcher's processes."""
    postgres = _postgres_seconds(database) if database else 0.0
    matcher_postgres = _backend_seconds(_backends_of(matcher_pids)) if matcher_pids else 0.0
    return CpuTimes(
        _process_seconds(server_pids),
        postgres,
        time.process_time(),
        _process_seconds(matcher_pids),
        matcher_postgres,
        _leaf_seconds(matcher_pids),
        _process_seconds(api_pids),
    )


def _process_seconds(pids: tuple[int, ...]) -> float:
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            # A worker's processes are children of the one we started.
            for member in (process, *process.children(recursive=True)):
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue  # gone or not ours to read: the figure is a lower bound, never an error
    return total


def _leaf_seconds(pids: tuple[int, ...]) -> float:
    """CPU of the processes below these that have none of their own: a worker's analysis processes."""
    total = 0.0
    for pid in pids:
        try:
            for member in psutil.Process(pid).children(recursive=True):
                if not member.children():
                    times = member.cpu_times()
                    total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _backends_of(pids: tuple[int, ...]) -> list[psutil.Process]:
    """The local Postgres backends serving these processes (and their children): the other end of each of their
    TCP connections, found by matching ports. Root (or the Postgres user) is needed to see them; else none."""
    client_ends: set[tuple[int, int]] = set()  # (client port, server port)
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for member in (process, *process.children(recursive=True)):
                client_ends.update(
                    (conn.laddr.port, conn.raddr.port) for conn in member.net_connections(kind="tcp") if conn.raddr
                )
        except psutil.Error:
            continue
    backends: list[psutil.Process] = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "postgres":
            continue
        try:
            ends = {(conn.raddr.port, conn.laddr.port) for conn in process.net_connections(kind="tcp") if conn.raddr}
        except psutil.Error:
            continue
        if ends & client_ends:
            backends.append(process)
    return backends


def _backend_seconds(backends: list[psutil.Process]) -> float:
    total = 0.0
    for process in backends:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _postgres_seconds(database: str) -> float:
    # Only the backends connected to our database ("postgres: [cluster:] user database host(port) state"): other
    # work on a shared server is not ours. Background processes (WAL writer, checkpointer) are left out for the same
    # reason, so this is a lower bound. Backends that exit mid-push take their time with them; pooled ones do not.
    total = 0.0
    for process in psutil.process_iter(["name", "cmdline"]):
        words = " ".join(process.info["cmdline"] or ()).split()
        if process.info["name"] != "postgres" or not _serves(words, database):
            continue
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            continue
    return total


def _serves(words: list[str], database: str) -> bool:
    return any(word == database and ("(" in after or after == "[local]") for word, after in itertools.pairwise(words))
