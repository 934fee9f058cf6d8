"""The soak's store: a database of its own on the machine's PostgreSQL when one is configured
(as in production: at real load, SQLite's single writer makes the API answer 503), else a
SQLite file, said so."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from metascheduler.chain.artifacts import REPO_ROOT

#: Where the URL comes from: the environment `make test` sets, else this clone's server.
ENV = "MS_TEST_POSTGRES_URL"
URL_FILE = REPO_ROOT / "var" / "postgres.url"


def postgres_server() -> str | None:
    url = os.environ.get(ENV, "").strip()
    if not url and URL_FILE.exists():
        lines = URL_FILE.read_text().strip().splitlines()
        url = lines[-1].strip() if lines else ""
    return url or None


def _admin(url: str) -> str:
    """The same server and user through psycopg itself (no SQLAlchemy dialect prefix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class SoakDatabase:
    """A fresh database named after the run (dropped at the end), or a SQLite file."""

    def __init__(self, root: Path, name: str):
        self.server = postgres_server()
        self.name = name
        self.url = f"sqlite:///{root / 'grid.db'}"
        self.created = False

    @property
    def kind(self) -> str:
        return "PostgreSQL" if self.created else "SQLite (no PostgreSQL configured)"

    def create(self) -> str:
        if self.server is None:
            return self.url
        import psycopg

        with psycopg.connect(_admin(self.server), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.created = True
        self.url = (
            make_url(self.server).set(database=self.name).render_as_string(hide_password=False)
        )
        return self.url

    def drop(self) -> None:
        if not self.created or self.server is None:
            return
        import psycopg

        with psycopg.connect(_admin(self.server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.created = False
