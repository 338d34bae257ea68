"""Database engines and sessions. One sync engine per process for the matcher, the API and the CLI."""

from __future__ import annotations

import contextlib
import enum
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker


def sqlalchemy_url(url: str) -> str:
    """Any Postgres URL, spelled for SQLAlchemy's psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL for psycopg itself (the gateway's pool), without SQLAlchemy's driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# The application name a transaction takes (`declare_writes_no_messages`) to say it stores no mail, so that the
# message feed does not wait for it (services/api/mailbox/service.py).
WRITES_NO_MESSAGES = "mailroom: writes no messages"


def declare_writes_no_messages(session: Session) -> None:
    """Say that the session's transaction will store no message, for as long as it runs: the message feed waits
    for every transaction that might (a long import would hold up every account's integrations)."""
    session.execute(text("SELECT set_config('application_name', :name, true)"), {"name": WRITES_NO_MESSAGES})


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    return create_engine(sqlalchemy_url(url), pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits when the block ends and rolls back if it raises."""
    with factory() as session, session.begin():
        yield session


class DirectSql:
    """A fixed SQL text, written with `:name` parameters like SQLAlchemy's `text()`, for `execute_direct`."""

    def __init__(self, sql: str) -> None:
        self.sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql.replace("%", "%%"))


def execute_direct(
    session: Session, statement: DirectSql, params: Mapping[str, Any], *, binary: bool = False
) -> psycopg.Cursor[Any]:
    """Run `statement` in the session's transaction straight through psycopg; rows are named tuples.

    For the statements the matcher runs for every batch: SQLAlchemy's execution layer costs about twice the CPU
    of psycopg's own for each (some 130 µs). Like `session.execute`, it first flushes what the session has
    pending and sends the deferred inserts (`defer_insert`), so the statement sees them. Values go to
    psycopg as they are: enums as their values, JSON wrapped in `psycopg.types.json.Jsonb`. `binary` asks for the
    results in binary, which spares both ends the hex text of a `bytea` twice its size."""
    session.flush()
    _send_deferred(session)
    return _psycopg(session).cursor(row_factory=namedtuple_row).execute(statement.sql, params, binary=binary)


def _psycopg(session: Session) -> psycopg.Connection[Any]:
    return cast(psycopg.Connection[Any], session.connection().connection.driver_connection)


# --- inserts sent together ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InsertInto:
    """A table a transaction inserts rows into with `defer_insert`, and the columns it gives (the others take
    their defaults). `skip_conflicts`: a row that meets an existing one is left out (ON CONFLICT DO NOTHING)."""

    table: str
    columns: tuple[str, ...]
    skip_conflicts: bool = False


_DEFERRED = "mailroom.deferred_inserts"


def defer_insert(session: Session, into: InsertInto, rows: Sequence[Mapping[str, Any]], *, order: int) -> None:
    """Insert `rows` into `into.table` with the transaction's next statement, whatever it is (it might read
    them), or at its commit: the rows of every deferred insert go in one statement, a table after another in
    `order` (parents first). Each statement costs a round trip and a parse and dump of its parameters on both
    ends; a batch of messages inserting its rows per message spent most of its CPU on that.

    Values are sent as JSON: what `json` cannot write itself (UUIDs, datetimes, enums, `Jsonb`) is converted. A
    failure shows up at the statement that sends them."""
    pending: dict[tuple[int, InsertInto], list[Mapping[str, Any]]] = session.info.setdefault(_DEFERRED, {})
    pending.setdefault((order, into), []).extend(rows)


def _send_deferred(session: Session) -> None:
    pending: dict[tuple[int, InsertInto], list[Mapping[str, Any]]] | None = session.info.pop(_DEFERRED, None)
    if not pending:
        return
    targets = sorted(pending, key=lambda key: key[0])
    sql = _deferred_sql(tuple(into for _, into in targets))
    params = {f"rows{n}": Jsonb(pending[key], dumps=_dumps) for n, key in enumerate(targets)}
    _psycopg(session).execute(sql, params)


_DEFERRED_SQL: dict[tuple[InsertInto, ...], str] = {}


def _deferred_sql(targets: tuple[InsertInto, ...]) -> str:
    """One statement: an INSERT per table, as data-modifying CTEs (the foreign keys are checked at its end)."""
    sql = _DEFERRED_SQL.get(targets)
    if sql is None:
        inserts = []
        for n, into in enumerate(targets):
            columns = ", ".join(f'"{column}"' for column in into.columns)
            insert = (
                f"INSERT INTO {into.table} ({columns}) SELECT {columns}"
                f" FROM jsonb_populate_recordset(NULL::{into.table}, %(rows{n})s)"
            )
            inserts.append(insert + (" ON CONFLICT DO NOTHING" if into.skip_conflicts else ""))
        *first, last = inserts
        sql = "".join(f"{'WITH' if n == 0 else ','} i{n} AS ({insert})" for n, insert in enumerate(first))
        sql = f"{sql} {last}".strip()
        _DEFERRED_SQL[targets] = sql
    return sql


def _dumps(value: object) -> str:
    return json.dumps(value, default=_json_value, separators=(",", ":"))


def _json_value(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Jsonb):
        return value.obj
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# Any statement the session runs, and its commit, first sends what was deferred.
@event.listens_for(Session, "do_orm_execute")
def _before_orm_statement(state: ORMExecuteState) -> None:
    _send_deferred(state.session)


@event.listens_for(Session, "before_flush")
def _before_unit_of_work(session: Session, _context: object, _instances: object) -> None:
    _send_deferred(session)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _send_deferred(session)


# Whatever is still deferred when the transaction ends was never sent (the commit sends it): it goes with the
# transaction, as the unit of work's pending objects do, and never into the session's next one.
@event.listens_for(Session, "after_transaction_end")
def _after_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_DEFERRED, None)
