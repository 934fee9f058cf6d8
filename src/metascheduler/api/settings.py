"""The API service's settings: the shared base (chain, store) plus where to listen."""

from __future__ import annotations

from pydantic import Field

from metascheduler.config import ServiceSettings


class ApiSettings(ServiceSettings):
    """Settings of `metascheduler api run` (env prefix ``MS_``, optional TOML file)."""

    #: The API reads the store the oracle writes, so by default it opens the oracle's file.
    database_url: str = "sqlite:///var/oracle.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: The chain id heartbeats must name; None: asked from `rpc_url` on the first heartbeat.
    chain_id: int | None = Field(default=None, ge=1)
    #: A provider is alive while its last heartbeat is younger than this (keep it equal to the
    #: oracle's `heartbeat_timeout_s`, so the dashboard and the oracle agree).
    heartbeat_timeout_s: float = Field(default=300.0, gt=0)
    #: Timeout of the RPC call that reads the chain head for /api/health and the lag metric; the
    #: API answers without the head when the chain is slow or down.
    rpc_timeout_s: float = Field(default=2.0, gt=0)
    #: Seconds a chain head read is reused, so health checks and scrapes do not hammer the RPC.
    head_cache_s: float = Field(default=2.0, ge=0)
