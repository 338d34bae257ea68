"""The Alembic migrations are the schema: they build it, they match the models, and they run backwards too."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from shared.db import sqlalchemy_url
from shared.migrate import alembic_config, upgrade
from shared.models import Base
from tests.conftest import Infra
from tests.support.servers import database_url, recreate_database


@pytest.fixture
def scratch_url(infra: Infra, worker_id: str) -> Iterator[str]:
    name = f"mailroom_test_{worker_id}_migrations"
    recreate_database(infra.admin_url, name)
    yield database_url(infra.admin_url, name)
    with psycopg.connect(infra.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_migrated_schema_matches_the_models(scratch_url: str) -> None:
    upgrade(scratch_url)
    engine = create_engine(sqlalchemy_url(scratch_url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert differences == []


def test_migrations_run_down_to_nothing_and_up_again(scratch_url: str) -> None:
    config = alembic_config(scratch_url)
    upgrade(scratch_url)
    command.downgrade(config, "base")
    upgrade(scratch_url)
