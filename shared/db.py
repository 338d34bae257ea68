"""Database engines and sessions. One sync engine per process for the matcher, the API and the CLI."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Any, cast

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def sqlalchemy_url(url: str) -> str:
    """Any Postgres URL, spelled for SQLAlchemy's psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL for psycopg itself (the gateway's pool), without SQLAlchemy's driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


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

    For the statements the matcher runs for every message and every batch: SQLAlchemy's execution layer costs
    about twice the CPU of psycopg's own for each (some 130 µs), which at three per message was a fifth of a
    worker's time. Like
    `session.execute`, it first flushes what the session has pending, so the statement sees it. Values go to
    psycopg as they are: enums as their values, JSON wrapped in `psycopg.types.json.Jsonb`. `binary` asks for the
    results in binary, which spares both ends the hex text of a `bytea` twice its size."""
    session.flush()
    connection = cast(psycopg.Connection[Any], session.connection().connection.driver_connection)
    return connection.cursor(row_factory=namedtuple_row).execute(statement.sql, params, binary=binary)
