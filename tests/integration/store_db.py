"""Database URLs for the store's tests: SQLite always, PostgreSQL when MS_TEST_POSTGRES_URL is
set (the Makefile exports it after `scripts/postgres.sh install-and-start`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from metascheduler.store import make_engine

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def fresh_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    url = os.environ.get("MS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(
            "MS_TEST_POSTGRES_URL is not set: run `scripts/postgres.sh install-and-start` and "
            "export the URL it prints"
        )
    engine = make_engine(url)
    with engine.begin() as conn:  # an empty schema per test
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    yield url
