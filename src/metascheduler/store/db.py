"""Engines, sessions and migrations: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

#: The migrations' two branches: the store the oracle writes, and the API's results tables
#: (metascheduler.results.store), which live in a database of their own or beside the store's.
STORE = "store"
RESULTS = "results"

#: The PostgreSQL advisory lock that one migrating process holds while the others wait (any
#: fixed number; this one spells "msmg").
PG_MIGRATION_LOCK = 0x6D736D67


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; a SQLite file's folder is created, and SQLite gets WAL and a busy
    timeout so the oracle and the API can share one file."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(u, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            # pysqlite's own transaction handling skips DDL: a crash mid-migration would leave
            # tables without alembic's version row. Let SQLAlchemy emit BEGIN itself instead
            # (SQLAlchemy's documented recipe), so migrations are all-or-nothing too.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(u, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates '%': a password may contain one.
    cfg.set_main_option("sqlalchemy.url", engine_url.replace("%", "%%"))
    return cfg


@contextmanager
def _sqlite_migration_lock(u: URL) -> Iterator[None]:
    """Holds an exclusive lock on a file beside the SQLite database while migrating. SQLite's own
    locks do not serialise two migrations: each reads the schema in a shared transaction, and
    when both then write, one fails at once with "database is locked" (its busy timeout does not
    apply to a read lock that would have to become a write lock)."""
    if not u.database or u.database == ":memory:":
        yield
        return
    db = Path(u.database)
    db.parent.mkdir(parents=True, exist_ok=True)
    with db.with_name(db.name + ".migrate-lock").open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is migrating %s: waiting for it", db)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pg_migration_lock(conn: Connection) -> None:
    """Takes the migration's advisory lock for the rest of `conn`'s transaction: another process
    migrating the same database waits here, then finds the schema at head."""
    if not conn.execute(
        text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK}
    ).scalar():
        log.info("another process is migrating this database: waiting for it")
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})


def upgrade_to_head(engine_url: str, branch: str = STORE) -> None:
    """Brings `branch` of the database at `engine_url` to its newest schema (called at
    start-up). Services that share a store may start at the same moment: one migrates while the
    others wait for it, then find nothing to do."""
    u = make_url(engine_url)
    sqlite = u.get_backend_name() == "sqlite"
    with _sqlite_migration_lock(u) if sqlite else nullcontext():
        engine = make_engine(engine_url)
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    _pg_migration_lock(conn)
                cfg = alembic_config(engine_url)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, f"{branch}@head")
        finally:
            engine.dispose()
    log.info("%s schema at head url=%s", branch, u.render_as_string(True))
