"""What the mailbox's lists cost at mailbox scale: `GET /v1/messages` and `GET /v1/threads`, over HTTP.

    python -m bench.listing [--messages 200000] [--pages 20] [--limit 100]

One account gets `--messages` messages, each in its own thread and with the inbound row it came from, written
straight into a scratch database with SQL (the matcher would take minutes). Then a client reads the first page of
each list, and follows `next_cursor` `--pages` pages deep, against the API running as its own process; the table
shows milliseconds per page (the median of three passes) and the API process's CPU per page. A list that sorts
or scans the whole mailbox for every page grows with the mailbox; one read in index order does not.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs in the lock file
from sqlalchemy import text

from shared import directory
from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import upgrade
from tests.support.servers import LOCAL_POSTGRES, LOCAL_REDIS, database_url, free_port, recreate_database
from tests.support.stack import Stack, base_env

DATABASE = "mailroom_bench_listing"

_THREADS = text(
    "INSERT INTO threads (id, account_id, subject, normalized_subject, first_message_at, last_message_at)"
    " SELECT md5(CAST(:account_id AS text) || n)::uuid, CAST(:account_id AS uuid), 'Quote ' || n, 'quote ' || n,"
    " now() - n * interval '1 minute', now() - n * interval '1 minute' FROM generate_series(1, :count) AS n"
)
_MESSAGES = text(
    'INSERT INTO messages (id, account_id, user_id, thread_id, message_id_header, subject, from_address, "to",'
    " sent_at, direction, text_body, new_text, created_at)"
    " SELECT gen_random_uuid(), CAST(:account_id AS uuid), :user_id, md5(CAST(:account_id AS text) || n)::uuid,"
    " 'listing-' || n || '@bench',"
    ' \'Quote \' || n, \'sam@bench.example\', \'[{"name": "Casey", "address": "customer@example.org"}]\','
    " now() - n * interval '1 minute', 'outbound', repeat('The numbers look good. ', 60), 'The numbers look good.',"
    " now() - n * interval '1 minute' FROM generate_series(1, :count) AS n"
)

_INBOUND = text(
    "INSERT INTO inbound_messages (id, account_id, user_id, envelope_from, envelope_to, raw, size, status,"
    " attempts, message_id, received_at, processed_at)"
    " SELECT gen_random_uuid(), account_id, user_id, 'sam@bench.example', 'bcc@bench.example',"
    " convert_to('Subject: ' || subject || E'\\r\\n\\r\\n' || text_body, 'UTF8'), 2000, 'processed', 1, id,"
    " created_at, created_at FROM messages WHERE account_id = CAST(:account_id AS uuid)"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000, help="messages (and threads) in the account")
    parser.add_argument("--pages", type=int, default=20, help="how deep the client follows the cursor")
    parser.add_argument("--limit", type=int, default=100, help="page size")
    args = parser.parse_args(argv)

    recreate_database(LOCAL_POSTGRES, DATABASE)
    url = database_url(LOCAL_POSTGRES, DATABASE)
    upgrade(url)
    token = _seed(url, args.messages)
    with tempfile.TemporaryDirectory(prefix="mailroom-listing-") as work_dir:
        env = base_env(
            database_url=url,
            redis_url=LOCAL_REDIS,
            data_dir=work_dir,
            api_host="127.0.0.1",
            api_port=str(free_port()),
            api_rate_limit_per_minute="0",
        )
        stack = Stack(env=env, log_dir=Path(work_dir))
        stack.start("api")
        try:
            api = psutil.Process(stack.processes["api"].process.pid)
            with httpx.Client(
                base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=120
            ) as client:
                print(f"{args.messages:,} messages in {args.messages:,} threads, pages of {args.limit}")
                print(f"{'list':18} {'first page ms':>14} {f'page {args.pages} ms':>12} {'API CPU ms/page':>16}")
                for path in ("/v1/messages", "/v1/messages/feed", "/v1/threads"):
                    first, deep, cpu = _measure(client, api, path, args.limit, args.pages)
                    print(f"{path:18} {first:14.1f} {deep:12.1f} {cpu:16.1f}")
        finally:
            stack.stop()
    return 0


def _seed(url: str, count: int) -> str:
    engine = make_engine(url, pool_size=1)
    try:
        with transaction(make_session_factory(engine)) as session:
            account = directory.create_account(session, "Listing bench")
            user = directory.create_user(session, account.account_id, "sam@bench.example", "Sam Seller")
            parameters = {"account_id": str(account.account_id), "user_id": user.id, "count": count}
            session.execute(_THREADS, parameters)
            session.execute(_MESSAGES, parameters)
            session.execute(_INBOUND, parameters)
        with engine.connect() as connection:  # statistics, as autovacuum would gather them soon enough
            connection.execute(text("ANALYZE threads, messages, inbound_messages"))
            connection.commit()
        return account.api_token
    finally:
        engine.dispose()


def _measure(
    client: httpx.Client, api: psutil.Process, path: str, limit: int, pages: int
) -> tuple[float, float, float]:
    """Milliseconds for the first page and for page `pages` (medians of three passes), and the API's CPU per page."""
    firsts: list[float] = []
    deeps: list[float] = []
    cpu_before, fetched = _cpu(api), 0
    for _ in range(3):
        cursor: str | None = None
        for page in range(1, pages + 1):
            params: dict[str, str | int] = {"limit": limit} if cursor is None else {"limit": limit, "cursor": cursor}
            started = time.perf_counter()
            response = client.get(path, params=params)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            fetched += 1
            if page == 1:
                firsts.append(elapsed)
            if page == pages:
                deeps.append(elapsed)
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break
    return statistics.median(firsts), statistics.median(deeps or [0.0]), (_cpu(api) - cpu_before) * 1000 / fetched


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


if __name__ == "__main__":
    raise SystemExit(main())
