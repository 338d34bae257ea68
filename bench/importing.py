"""What a CSV import costs per row, and whether that stays flat as the file goes on.

    python -m bench.importing [--rows 10000] [--slices 5]

A scratch database gets one account with `--rows` persons, imported first; then a deals file of as many rows,
each deal naming its person by external id and its owner by email, is imported in one transaction, as
`POST /v1/import/deals` and `mailroom import deals` do (in this process, without HTTP). The table shows the
milliseconds per row of each slice of the deals file: a look-up that scans the rows imported so far shows up as
later slices costing more than the first.
"""

from __future__ import annotations

import argparse
import itertools
import time
import uuid
from collections.abc import Iterator, Sequence

from services.api.deps import Caller
from services.api.transfer.formats import Kind
from services.api.transfer.importer import import_rows
from shared import directory
from shared.db import make_engine, make_session_factory, transaction
from shared.migrate import upgrade
from shared.models import TokenScope
from tests.support.servers import LOCAL_POSTGRES, database_url, recreate_database

DATABASE = "mailroom_bench_importing"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.importing", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--slices", type=int, default=5)
    args = parser.parse_args(argv)

    recreate_database(LOCAL_POSTGRES, DATABASE)
    url = database_url(LOCAL_POSTGRES, DATABASE)
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        account = directory.create_account(session, "Bench import")
        directory.create_user(session, account.account_id, "owner@acme.example", "Owner")
    caller = Caller(account_id=account.account_id, scope=TokenScope.admin, user_id=None, token_id=uuid.uuid4())

    persons = ["external_id,name,emails\n"]
    persons += [f"p{n},Person {n},p{n}@customer{n}.example\n" for n in range(args.rows)]
    with transaction(sessions) as session:
        import_rows(session, caller, Kind.persons, persons, dry_run=False)

    slice_rows = max(1, args.rows // args.slices)
    marks: list[float] = []

    def deals() -> Iterator[str]:
        yield "external_id,title,value,currency,owner_email,person_external_id\n"
        for n in range(args.rows):
            if n % slice_rows == 0:
                marks.append(time.perf_counter())
            yield f"d{n},Deal {n},{n * 10},EUR,owner@acme.example,p{n}\n"

    with transaction(sessions) as session:
        report = import_rows(session, caller, Kind.deals, deals(), dry_run=False)
        marks.append(time.perf_counter())
    engine.dispose()

    print(f"imported {report.created} of {args.rows} deals ({len(report.rejected)} rejected), one transaction")
    print(f"{'rows':>15}  {'ms/row':>7}")
    for index, (start, end) in enumerate(itertools.pairwise(marks)):
        first = index * slice_rows
        last = min(first + slice_rows, args.rows)
        print(f"{first:>6} – {last:<6}  {(end - start) * 1000 / (last - first):7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
