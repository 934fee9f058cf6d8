"""The store's tables (SQLAlchemy 2). SQLite by default, PostgreSQL by URL; alembic migrates.

Three kinds of rows:
- the raw chain record: `events` (keyed by (tx_hash, log_index), so a replay is harmless),
  `blocks` (recent hashes, to detect reorgs) and `chain_cursor` (how far ingestion has gone);
- projections rebuilt from events alone: `jobs` and `providers` (`store.projection`), plus the
  heartbeat columns of `providers`, which the API writes and the projection leaves alone;
- the oracle's memory of what it sent: `oracle_actions`.

Conventions: times are unix seconds (block time for chain facts); addresses are checksummed
0x strings; hashes are 0x-prefixed lowercase hex; credit amounts and prices are `Uint256` (Python
int, exact on both backends); statuses are the ints of chain.types.JobStatus/ProviderStatus.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from metascheduler.store.types import Uint256

#: Constraint names stable across backends, so migrations can name what they alter.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Address = String(42)
Hash = String(66)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ChainCursor(Base):
    """The last block whose logs are all in `events`; written in the same transaction as them."""

    __tablename__ = "chain_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(Hash)


class Block(Base):
    """A recently ingested block: its hash is compared with the chain's to detect a reorg."""

    __tablename__ = "blocks"

    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(Hash)
    parent_hash: Mapped[str] = mapped_column(Hash)
    timestamp: Mapped[int] = mapped_column(BigInteger)


class Event(Base):
    """One decoded log of the market. `args` is JSON: ints beyond 2**53 as decimal strings,
    bytes as 0x hex."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_job_id_block", "job_id", "block_number", "log_index"),
        Index("ix_events_block_number", "block_number"),
    )

    tx_hash: Mapped[str] = mapped_column(Hash, primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(Hash)
    block_time: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    customer: Mapped[str | None] = mapped_column(Address, index=True)
    provider: Mapped[str | None] = mapped_column(Address, index=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON)


class Job(Base):
    """A job as its events tell it (projection; `store.projection` writes every column but
    `unplaceable_reason`, which the oracle sets)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_job_id", "status", "job_id"),
        Index("ix_jobs_customer_job_id", "customer", "job_id"),
        Index("ix_jobs_provider_status", "provider", "status"),
        # The oracle's reads of pending jobs, with and without its unplaceable verdict (see
        # `store.queries.placement_rows` and `unplaceable_rows_after`): behind a flood of spam
        # it finds the few it needs without scanning every pending job.
        Index(
            "ix_jobs_unjudged",
            "status",
            "job_id",
            sqlite_where=text("unplaceable_reason IS NULL"),
            postgresql_where=text("unplaceable_reason IS NULL"),
        ),
        Index(
            "ix_jobs_judged",
            "status",
            "updated_block",
            "job_id",
            sqlite_where=text("unplaceable_reason IS NOT NULL"),
            postgresql_where=text("unplaceable_reason IS NOT NULL"),
        ),
    )

    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    customer: Mapped[str] = mapped_column(Address)
    provider: Mapped[str | None] = mapped_column(Address)
    status: Mapped[int] = mapped_column(Integer)
    escrow: Mapped[int] = mapped_column(Uint256)
    max_price_per_minute: Mapped[int] = mapped_column(Uint256)
    cpus: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[int] = mapped_column(Integer)
    mem_mb: Mapped[int] = mapped_column(BigInteger)
    spec: Mapped[bytes] = mapped_column(LargeBinary)
    spec_hash: Mapped[str] = mapped_column(Hash)
    #: Labels the spec asks for (empty if the spec does not parse).
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: The spec's time limit in minutes, if it parses (placement's runtime estimate).
    time_limit_minutes: Mapped[int | None] = mapped_column(Integer)
    price_per_minute: Mapped[int | None] = mapped_column(Uint256)
    fee_bps: Mapped[int | None] = mapped_column(Integer)
    requested_at: Mapped[int] = mapped_column(BigInteger)
    placed_at: Mapped[int | None] = mapped_column(BigInteger)
    accepted_at: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[int | None] = mapped_column(BigInteger)
    ended_at: Mapped[int | None] = mapped_column(BigInteger)
    requested_block: Mapped[int] = mapped_column(BigInteger)
    paid: Mapped[int | None] = mapped_column(Uint256)
    fee: Mapped[int | None] = mapped_column(Uint256)
    refunded: Mapped[int | None] = mapped_column(Uint256)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    #: Why the oracle cannot place the job (None while placeable); set by the oracle.
    unplaceable_reason: Mapped[str | None] = mapped_column(Text)
    #: The last reason the chain gave (a refusal or reclaim).
    last_reason: Mapped[str | None] = mapped_column(Text)
    #: How many times the job went back to PENDING.
    returns: Mapped[int] = mapped_column(Integer, default=0)
    updated_block: Mapped[int] = mapped_column(BigInteger)


class Provider(Base):
    """A provider as its registration events tell it, plus heartbeat columns the API writes."""

    __tablename__ = "providers"

    address: Mapped[str] = mapped_column(Address, primary_key=True)
    status: Mapped[int] = mapped_column(Integer)
    nodes: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[int] = mapped_column(Integer)
    mem_mb: Mapped[int] = mapped_column(BigInteger)
    cpu_price: Mapped[int] = mapped_column(Uint256)
    gpu_price: Mapped[int] = mapped_column(Uint256)
    gb_price: Mapped[int] = mapped_column(Uint256)
    labels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    registered_block: Mapped[int] = mapped_column(BigInteger)
    updated_block: Mapped[int] = mapped_column(BigInteger)
    #: Heartbeats (API-owned; a projection rebuild keeps them): unix seconds, the last seq and
    #: the last verified heartbeat body.
    last_heartbeat_at: Mapped[int | None] = mapped_column(BigInteger)
    last_heartbeat_seq: Mapped[int | None] = mapped_column(BigInteger)
    heartbeat: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class OracleAction(Base):
    """A transaction the oracle sends: recorded before it is sent (an intent), so a restarted
    oracle knows which jobs may still be in flight and does not act on them twice."""

    __tablename__ = "oracle_actions"
    __table_args__ = (Index("ix_oracle_actions_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: place | reclaim | fail | expire
    kind: Mapped[str] = mapped_column(String(16))
    #: Known once signed; None for an intent that was never sent.
    tx_hash: Mapped[str | None] = mapped_column(Hash, index=True)
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    job_ids: Mapped[list[Any]] = mapped_column(JSON)
    #: For placements: the provider of each job, in the order of job_ids.
    providers: Mapped[list[Any] | None] = mapped_column(JSON)
    #: intent | sent | mined | reverted | dropped
    state: Mapped[str] = mapped_column(String(16))
    #: Unix seconds (wall clock).
    sent_at: Mapped[float] = mapped_column(Float)
    mined_block: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    #: Items the contract skipped: [[index, job_id, error in words], ...]
    skipped: Mapped[list[Any] | None] = mapped_column(JSON)
