"""Alembic environment: the URL comes from the caller (`mailroom migrate`) or from MAILROOM_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from shared.db import sqlalchemy_url
from shared.models import Base
from shared.settings import Settings

config = context.config
url = config.attributes.get("database_url") or Settings().require_database_url()

connectable = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        # Several processes may start at once (`mailroom up`, test workers): one migrates, the others wait.
        context.execute("SELECT pg_advisory_xact_lock(7202611240)")
        context.run_migrations()
