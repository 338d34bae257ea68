"""The Alembic migrations are the schema: they build it, they match the models, and they run backwards too."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from shared.db import sqlalchemy_url
from shared.migrate import alembic_config, upgrade
from shared.models import Base


def test_the_migrated_schema_matches_the_models(empty_database: str) -> None:
    upgrade(empty_database)
    engine = create_engine(sqlalchemy_url(empty_database), poolclass=pool.NullPool)
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert differences == []


def test_migrations_run_down_to_nothing_and_up_again(empty_database: str) -> None:
    config = alembic_config(empty_database)
    upgrade(empty_database)
    command.downgrade(config, "base")
    upgrade(empty_database)
