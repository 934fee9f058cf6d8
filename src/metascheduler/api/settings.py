"""The API service's settings: the chain and the store (``metascheduler.config``), where to
listen, and where results go."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from sqlalchemy.engine import make_url

from metascheduler.chain.deployment import Deployment
from metascheduler.config import ChainSettings, StoreSettings


class ApiSettings(ChainSettings, StoreSettings):
    """Settings of `metascheduler api run` (env prefix ``MS_``, optional TOML file). The API
    signs nothing and follows no events: it reads the store and the chain's head."""

    unread = frozenset({"confirmations", "keystore", "keystore_password", "private_key"})
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

    # -- results: log chunks and encrypted outputs (ciphertext only) ---------------------------
    #: The API's own database of log chunks and output records (metascheduler.results.store).
    #: None: beside a SQLite store, a file `results.db` in its folder; else the store's database.
    results_database_url: str | None = None
    #: Any S3-compatible object store for outputs; None: outputs are refused (503), logs work.
    #: The credentials never leave the API: agents and customers get pre-signed URLs.
    object_store_endpoint: str | None = None
    object_store_bucket: str = "metascheduler-results"
    object_store_access_key: SecretStr | None = None
    object_store_secret_key: SecretStr | None = None
    object_store_region: str = "us-east-1"
    #: The grid's caps: one job's encrypted outputs, and one job's log ciphertext.
    max_output_bytes: int = Field(default=10 * 2**30, ge=1)
    max_log_bytes: int = Field(default=256 * 2**20, ge=1)
    #: Outputs larger than this go up in parts of this size (S3's minimum part is 5 MiB).
    multipart_part_bytes: int = Field(default=32 * 2**20, ge=5 * 2**20)
    #: Seconds a pre-signed URL stays valid.
    presign_ttl_s: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    #: Longest a log read waits for new chunks before answering empty (long polling).
    log_wait_max_s: float = Field(default=25.0, ge=0)

    def take_deployment(self, dep: Deployment) -> None:
        # The API checks the chain id that heartbeats name.
        if self.chain_id is not None and self.chain_id != dep.chain_id:
            raise ValueError(
                f"chain_id {self.chain_id} differs from the chain id {dep.chain_id} of the "
                f"deployment file {self.deployment}: give one or the other"
            )
        self.chain_id = dep.chain_id

    def results_url(self) -> str:
        if self.results_database_url:
            return self.results_database_url
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return str(url.set(database=str(Path(url.database).with_name("results.db"))))
        return self.database_url
