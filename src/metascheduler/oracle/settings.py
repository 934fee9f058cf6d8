"""The oracle's settings: the chain's history, a signer and the store (``metascheduler.config``),
and how it places and keeps jobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from metascheduler.config import HistorySettings, SignerSettings, StoreSettings


class OracleSettings(HistorySettings, SignerSettings, StoreSettings):
    """The oracle service: ingestion, placement and housekeeping ticks."""

    #: Placement policy name, as registered in metascheduler.placement (None: its default).
    policy: str | None = None
    ingest_interval_s: float = Field(default=1.0, gt=0)
    place_interval_s: float = Field(default=1.0, gt=0)
    keep_interval_s: float = Field(default=10.0, gt=0)
    #: Most jobs per placeJobs transaction; 0 sizes batches to the block gas limit.
    batch_size: int = Field(default=0, ge=0)
    #: Share of the block gas limit one placement transaction may use.
    batch_gas_fraction: float = Field(default=0.95, gt=0, le=1)
    #: Placement transactions the oracle keeps unmined at once (consecutive nonces).
    max_txs_in_flight: int = Field(default=8, ge=1)
    #: Priority fee (tip) of the oracle's transactions, gwei: above customers' default 1 gwei so
    #: that placements go first in a full block.
    priority_fee_gwei: float = Field(default=2.0, ge=0)
    #: Seconds a sent transaction may stay unmined before the oracle resyncs its nonce.
    tx_stuck_s: float = Field(default=60.0, gt=0)
    #: Where provider heartbeats come from: "api" (the providers table, which the API updates
    #: when agents POST heartbeats) or "none" (no heartbeat system: every provider is alive).
    heartbeat_source: Literal["none", "api"] = "none"
    #: Seconds without a heartbeat after which a provider's RUNNING jobs are failed and refunded.
    heartbeat_timeout_s: float = Field(default=300.0, gt=0)
    #: Ingestion: the first eth_getLogs range asked for (halved on a refusal, doubled
    #: after a success, up to getlogs_max_range).
    getlogs_initial_range: int = Field(default=500, ge=1)
    #: How many recent block hashes the store keeps to detect reorgs.
    reorg_window: int = Field(default=128, ge=4)
