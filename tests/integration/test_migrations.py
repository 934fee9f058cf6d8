"""The migrations build exactly the schema the models declare (no drift), on SQLite and on
PostgreSQL: the store's, the API's results tables in a database of their own, and both in one
database (the API's default on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from metascheduler.results.store import ResultsBase
from metascheduler.store import RESULTS, Base, make_engine, upgrade_to_head
from tests.integration.store_db import BACKENDS, fresh_url


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_url(request.param, tmp_path)


def _diff(url: str, metadata: MetaData) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def test_migrations_match_the_models(url: str) -> None:
    upgrade_to_head(url)
    upgrade_to_head(url)  # idempotent: a restarted service migrates again
    diff = _diff(url, Base.metadata)
    assert diff == [], f"the models and the migrations disagree: {diff}"


def test_results_migrations_match_the_models_alone_and_beside_the_store(url: str) -> None:
    upgrade_to_head(url, RESULTS)
    upgrade_to_head(url, RESULTS)
    diff = _diff(url, ResultsBase.metadata)
    assert diff == [], f"the results models and their migrations disagree: {diff}"
    upgrade_to_head(url)  # the store's tables beside them, each branch at its own head
    both = MetaData()
    for table in [*Base.metadata.tables.values(), *ResultsBase.metadata.tables.values()]:
        table.to_metadata(both)
    diff = _diff(url, both)
    assert diff == [], f"the models and the migrations disagree: {diff}"


def test_results_tables_made_before_their_migration_are_adopted(url: str) -> None:
    """The API once made its results tables itself (create_all), with no migration recorded:
    the first migration takes them as they are instead of failing on them."""
    engine = make_engine(url)
    try:
        ResultsBase.metadata.create_all(engine)
    finally:
        engine.dispose()
    upgrade_to_head(url, RESULTS)
    diff = _diff(url, ResultsBase.metadata)
    assert diff == [], f"the results models and their migrations disagree: {diff}"
