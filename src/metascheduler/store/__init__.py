"""The store: chain events and their projections (jobs, providers), in SQL.

Knows the chain layer's records but nothing of the oracle, API or agent. SQLite by default,
PostgreSQL by URL; `upgrade_to_head(url)` migrates at start-up.
"""

from metascheduler.store.db import RESULTS, STORE, make_engine, session_factory, upgrade_to_head
from metascheduler.store.ingest import Ingester, rebuild
from metascheduler.store.models import (
    Base,
    Block,
    ChainCursor,
    Event,
    Job,
    OracleAction,
    Provider,
)

__all__ = [
    "RESULTS",
    "STORE",
    "Base",
    "Block",
    "ChainCursor",
    "Event",
    "Ingester",
    "Job",
    "OracleAction",
    "Provider",
    "make_engine",
    "rebuild",
    "session_factory",
    "upgrade_to_head",
]
