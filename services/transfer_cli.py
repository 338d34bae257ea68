"""`mailroom import` and `mailroom export`: CSV files in and out of one account, straight against the database.

They run the same code as the API's /v1/imports and /v1/exports, as an account-wide integration named "mailroom CLI"
(the `created_by` of what they create). The import's report is printed as JSON on standard output while a progress
bar on standard error follows long files. Exit status: 0; 1 when rows were rejected; 2 when the file or the account
cannot be used at all.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.orm import Session

from services.api.deps import Caller
from services.api.transfer.exporter import export_lines
from services.api.transfer.formats import Kind
from services.api.transfer.importer import FileError, import_rows
from services.api.transfer.routes import report_out
from services.runtime import resolved_servers
from shared.db import make_engine, make_session_factory, transaction
from shared.models import Account, TokenScope
from shared.settings import Settings

# The CLI holds no API token; provenance names it ("mailroom CLI") instead of pointing at one.
CLI_TOKEN_ID = uuid.UUID(int=0)


def run_transfer(args: argparse.Namespace, settings: Settings) -> int:
    try:
        account_id = uuid.UUID(args.account)
    except ValueError:
        return _fail(f"no account {args.account}")
    with resolved_servers(settings, with_redis=False) as resolved:
        engine = make_engine(resolved.require_database_url(), pool_size=1)
        try:
            with transaction(make_session_factory(engine)) as session:
                if session.get(Account, account_id) is None:
                    return _fail(f"no account {args.account}")
                caller = Caller(
                    account_id=account_id,
                    scope=TokenScope.admin,
                    user_id=None,
                    token_id=CLI_TOKEN_ID,
                    token_name="mailroom CLI",  # noqa: S106 -- a label for provenance, not a secret
                )
                if args.command == "export":
                    with _output(args.output) as out:
                        for line in export_lines(session, caller, Kind(args.kind)):
                            out.write(line)
                    return 0
                return _import(session, caller, Kind(args.kind), args)
        finally:
            engine.dispose()


def _import(session: Session, caller: Caller, kind: Kind, args: argparse.Namespace) -> int:
    source: str = args.file
    try:
        total = None if source == "-" else _count_rows(Path(source))
    except OSError as exc:
        return _fail(f"cannot read {source}: {exc.strerror}")
    except UnicodeDecodeError:
        return _fail(f"{source} is not UTF-8")
    with _input(source) as lines, _progress(not args.no_progress, total, kind) as advance:
        try:
            report = import_rows(session, caller, kind, lines, dry_run=args.dry_run, progress=advance)
        except FileError as exc:
            return _fail(str(exc))
        except UnicodeDecodeError:
            return _fail(f"{source} is not UTF-8")
    print(report_out(report).model_dump_json(), flush=True)
    return 1 if report.rejected else 0


def _count_rows(path: Path) -> int:
    """Rows in the file (not lines: a quoted cell may span several), for the progress bar's total."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)


@contextlib.contextmanager
def _input(source: str) -> Iterator[IO[str]]:
    if source == "-":
        yield sys.stdin
        return
    with Path(source).open(encoding="utf-8-sig", newline="") as handle:
        yield handle


@contextlib.contextmanager
def _output(target: str) -> Iterator[IO[str]]:
    if target == "-":
        yield sys.stdout
        return
    with Path(target).open("w", encoding="utf-8", newline="") as handle:
        yield handle


@contextlib.contextmanager
def _progress(show: bool, total: int | None, kind: Kind) -> Iterator[Callable[[int], None] | None]:
    if not show:
        yield None
        return
    columns = (TextColumn(f"importing {kind.value}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # Standard error, so the JSON report on standard output stays machine-readable.
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(kind.value, total=total)
        yield lambda done: bar.update(task, completed=done)


def _fail(message: str) -> int:
    print(f"mailroom: {message}", file=sys.stderr)
    return 2
