"""The matcher alone, in this process: how fast one worker thread places a backlog, and what each message costs.

    python -m bench.placement [--messages 1000] [--batch-size 16] [--profile FILE]

No SMTP, Redis or API: the backlog is written straight into a scratch database (as the gateway would), then one
thread drains it with `Matcher.process_due`, exactly as the actor calls it (after `--warmup` messages and an
`ANALYZE`, so that Postgres plans with statistics, as in a running system). It prints messages per second, the
CPU of this process and of its Postgres backend per message, and the SQL statements and round trips per message:
the numbers the end-to-end bench cannot separate from the gateway and the API sharing the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import psutil  # type: ignore[import-untyped]  # no stubs in the lock file
import psycopg
from sqlalchemy import event, insert, text
from sqlalchemy.orm import Session, sessionmaker

from bench.mail import MessageFactory, new_run_id
from services.matcher.mail.budget import Analyser, InProcessAnalyser
from services.matcher.pipeline import Matcher
from shared import directory
from shared.blobstore import LocalBlobStore
from shared.db import make_engine, make_session_factory, transaction
from shared.logging import configure_logging
from shared.migrate import upgrade
from shared.models import CreatedFrom, InboundMessage, InboundStatus, Organization, OrganizationDomain
from shared.settings import Settings
from tests.support.servers import LOCAL_POSTGRES, database_url, recreate_database

DATABASE = "mailroom_bench_placement"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.placement", description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=Settings().matcher_batch_size)
    parser.add_argument(
        "--warmup", type=int, default=160, help="messages placed before the clock starts, then ANALYZE (default 160)"
    )
    parser.add_argument(
        "--new-contacts", action="store_true", help="every message to a customer of its own: a person created each"
    )
    parser.add_argument(
        "--organization",
        action="store_true",
        help="the customers' domain belongs to an organization (as in a CRM in use), so their persons are linked",
    )
    parser.add_argument("--profile", type=Path, help="write a cProfile of the draining to this file")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="analyse in this process (the tests' way) instead of in budgeted child processes (the worker's way)",
    )
    args = parser.parse_args(argv)
    # As the worker logs (a JSON line per message is part of its cost); run with 2>/dev/null to keep the table.
    configure_logging("worker", log_format="json")

    recreate_database(LOCAL_POSTGRES, DATABASE)
    url = database_url(LOCAL_POSTGRES, DATABASE)
    upgrade(url)
    engine = make_engine(url, pool_size=2)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        account = directory.create_account(session, "Placement bench")
        user = directory.create_user(session, account.account_id, "sam@bench.example", "Sam Seller")
        bcc = directory.bcc_address(user, "bcc.bench.example")
        account_id, user_id = account.account_id, user.id
        if args.organization:
            customers = Organization(account_id=account_id, name="Example", created_from=CreatedFrom.api)
            session.add(customers)
            session.flush()
            session.add(OrganizationDomain(account_id=account_id, organization_id=customers.id, domain="example.org"))
    factory = MessageFactory(args.size, new_run_id(), "sam@bench.example", new_contacts=args.new_contacts)
    every_id = _backlog(sessions, factory, args.warmup + args.messages, account_id, user_id, bcc)
    warmup_ids, ids = every_id[: args.warmup], every_id[args.warmup :]

    statements: Counter[str] = Counter()

    class CountingCursor(psycopg.Cursor[Any]):
        """Counts what reaches psycopg: SQLAlchemy's statements and those the matcher runs on psycopg directly."""

        def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Self:
            statements[str(query).split(None, 1)[0].upper()] += 1
            return super().execute(query, params, **kwargs)

        def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
            statements[str(query).split(None, 1)[0].upper()] += 1
            super().executemany(query, params_seq, **kwargs)

    @event.listens_for(engine, "connect")
    def count_statements(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.cursor_factory = CountingCursor

    engine.dispose()  # connections made before the listener would not count

    blob_dir = Path(f"/tmp/{DATABASE}-blobs")
    analyser = None if args.in_process else Analyser.from_settings(Settings())
    matcher = Matcher(
        sessions=sessions,
        blobs=LocalBlobStore(blob_dir),
        batch_size=args.batch_size,
        analyse_all=analyser.analyse_all if analyser else InProcessAnalyser().analyse_all,
    )
    for start in range(0, len(warmup_ids), args.batch_size):
        matcher.process_due(warmup_ids[start : start + args.batch_size])
    # Statistics, as autovacuum keeps them in a running system: without them Postgres takes the account's rows
    # for a handful and plans look-ups by id as scans of the account.
    with engine.connect() as probe:
        probe.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    statements.clear()
    with engine.connect() as probe:  # the backend the matcher will mostly use is not known; count them all
        backends_before = _backend_cpu(probe)
    me = psutil.Process()
    if analyser is not None:
        analyser.analyse_all([b"Subject: start the analysis process\r\n\r\n"])  # started before the clock runs
    children_before = _children_cpu(me)
    cpu_before, started = me.cpu_times(), time.perf_counter()
    # CPU time, not wall time: waits for Postgres and the analysis processes are not this process's cost.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    if profiler:
        profiler.enable()
    for start in range(0, len(ids), args.batch_size):  # as the gateway enqueues them under load: a batch a time
        matcher.process_due(ids[start : start + args.batch_size])
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    elapsed, cpu_after = time.perf_counter() - started, me.cpu_times()
    children = _children_cpu(me) - children_before
    with engine.connect() as probe:
        backends = _backend_cpu(probe) - backends_before
        placed = probe.execute(
            text("SELECT count(*) FROM inbound_messages WHERE account_id = :a AND status = 'processed'"),
            {"a": account_id},
        ).scalar_one()
    engine.dispose()
    if analyser is not None:
        analyser.close()

    n = args.messages
    own = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    total = sum(statements.values())
    print(f"placed {placed - args.warmup}/{n} messages of {factory.wire_size()} B, batch size {args.batch_size}")
    print(f"{'messages/s (one thread)':32} {n / elapsed:10.1f}")
    print(f"{'matcher CPU ms/message':32} {1000 * own / n:10.2f}")
    print(f"{'analysis processes CPU ms/msg':32} {1000 * children / n:10.2f}")
    print(f"{'Postgres CPU ms/message':32} {1000 * backends / n:10.2f}")
    print(f"{'SQL statements/message':32} {total / n:10.2f}")
    for verb, count_ in statements.most_common():
        print(f"  {verb:30} {count_ / n:10.2f}")
    if args.profile:
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(35)
    return 0


def _backlog(
    sessions: sessionmaker[Session],
    factory: MessageFactory,
    n: int,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    bcc: str,
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    rows = []
    for number, inbound_id in enumerate(ids):
        wire = b"".join(factory.parts(number))
        raw = wire[: -len(b".\r\n")]
        rows.append(
            {
                "id": inbound_id,
                "account_id": account_id,
                "user_id": user_id,
                "envelope_from": "sam@bench.example",
                "envelope_to": bcc,
                "raw": raw,
                "size": len(raw),
                "status": InboundStatus.received.value,
                "attempts": 0,
            }
        )
    with transaction(sessions) as session:
        session.execute(insert(InboundMessage), rows)
    return ids


def _children_cpu(process: psutil.Process) -> float:
    total = 0.0
    for child in process.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _backend_cpu(connection: Any) -> float:
    """CPU seconds of every backend of the bench database (the matcher's, and this probe's own, which idles)."""
    pids = connection.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": DATABASE}).scalars()
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


if __name__ == "__main__":
    raise SystemExit(main())
