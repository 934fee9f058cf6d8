"""The migrations build exactly the schema the models declare (no drift), on SQLite and on
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from metascheduler.store import Base, make_engine, upgrade_to_head
from tests.integration.store_db import BACKENDS, fresh_url


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_url(request.param, tmp_path)


def test_migrations_match_the_models(url: str) -> None:
    upgrade_to_head(url)
    upgrade_to_head(url)  # idempotent: a restarted service migrates again
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"the models and the migrations disagree: {diff}"
