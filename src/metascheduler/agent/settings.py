"""The provider agent's settings: one object, read once at start-up (``AgentSettings.load``).

TOML file (see ``examples/agent-local.toml`` and ``examples/agent-slurm.toml``) under the
environment (``MS_`` prefix; nested fields with ``__``, e.g. ``MS_HARDWARE__CPUS=64``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from metascheduler.config import ServiceSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HardwareSettings(_Section):
    """What the provider declares on chain, summed over its cluster. A field left unset is taken
    from the backend's own count at start-up (``Backend.capacity()``: sinfo, or the local
    backend's limits); ``nodes`` defaults to 1."""

    nodes: int = Field(default=1, ge=1, le=65_535)
    cpus: int | None = Field(default=None, ge=1)
    gpus: int | None = Field(default=None, ge=0)
    mem_mb: int | None = Field(default=None, ge=1)


class PriceSettings(_Section):
    """Prices in credit units (1 credit = 1,000,000 units) per minute of one CPU, one GPU and
    one GB of memory."""

    cpu: int = Field(default=1_000, ge=0, lt=2**40)
    gpu: int = Field(default=0, ge=0, lt=2**40)
    gb: int = Field(default=0, ge=0, lt=2**40)


class SlurmSettings(_Section):
    partition: str = "alpha"
    #: Job scripts and ``job-<id>.out``/``.err`` go here; must be visible from the compute nodes.
    output_dir: Path = Path("var/agent/slurm-jobs")
    #: Passed to every Slurm command as SLURM_CONF (unset: Slurm's default /etc/slurm/slurm.conf).
    slurm_conf: Path | None = None
    command_timeout_s: float = Field(default=30.0, gt=0)


class LocalSettings(_Section):
    workdir: Path = Path("var/agent/local")
    #: Capacity of the local backend (unset: this machine's CPUs and memory, no GPUs).
    cpus: int | None = Field(default=None, ge=1)
    mem_mb: int | None = Field(default=None, ge=1)
    gpus: int = Field(default=0, ge=0)


class AgentSettings(ServiceSettings):
    """One provider agent: its backend, what it declares on chain, and how often it acts."""

    model_config = SettingsConfigDict(
        env_prefix="MS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    backend: Literal["slurm", "local"] = "local"
    slurm: SlurmSettings = SlurmSettings()
    local: LocalSettings = LocalSettings()

    hardware: HardwareSettings = HardwareSettings()
    prices: PriceSettings = PriceSettings()
    #: What the provider offers (e.g. ``gpu``, ``x86_64``); a job asking for a label not here is
    #: refused.
    labels: list[str] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _labels_as_set(cls, v: list[str]) -> list[str]:
        # Sorted and unique, like a spec's labels: the registered record compares equal.
        return sorted(set(v))

    #: The agent's own small state (chain cursor, job -> backend id, heartbeat seq) lives here.
    state_dir: Path = Path("var/agent")
    #: Longest wait between two rounds of following the chain and the backend (a new block, or
    #: a job of the backend that ended, starts a round at once).
    poll_interval_s: float = Field(default=2.0, gt=0)
    #: Oracle API base URL for signed heartbeats (``POST {api_url}/api/heartbeats``); unset: none.
    api_url: str | None = None
    heartbeat_interval_s: float = Field(default=15.0, gt=0)
    heartbeat_timeout_s: float = Field(default=5.0, gt=0)

    #: Prefix of backend job names, followed by the on-chain id. Unset: derived from the chain
    #: and the market (see ``name_prefix``), so that deployments sharing a cluster never adopt
    #: each other's jobs.
    job_name_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    #: Seconds added to the time a job's escrow pays for when setting the backend's time limit:
    #: covers the delay between the backend starting the job and the chain recording its start,
    #: and Slurm's minute granularity. The agent kills jobs at the on-chain limit itself.
    time_limit_grace_s: int = Field(default=120, ge=0)
    #: Longest time limit ever given to the backend (a free job is "funded" for ever).
    max_time_limit_s: int = Field(default=30 * 24 * 3600, ge=60)

    #: First block to read placements from (the market's deployment block), and eth_getLogs range.
    start_block: int = Field(default=0, ge=0)
    getlogs_max_range: int = Field(default=10_000, ge=1)
    #: How far back the cursor rewinds when the chain reorganised under it.
    reorg_rewind_blocks: int = Field(default=64, ge=1)
    rpc_timeout_s: float = Field(default=10.0, gt=0)
    #: Seconds one RPC outage may last before a round gives up (the next round retries).
    rpc_deadline_s: float = Field(default=60.0, gt=0)
    #: Seconds the agent waits for one transaction's receipt. A transaction not mined by then
    #: (dropped by a reorg, stuck behind a missing nonce) ends the round's sending; the nonce is
    #: re-read from the node and the next round derives its steps from the chain again.
    receipt_timeout_s: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _backend_options(self) -> AgentSettings:
        if self.backend == "slurm" and not self.slurm.partition:
            raise ValueError("backend 'slurm' needs slurm.partition")
        return self

    def name_prefix(self, genesis_hash: bytes) -> str:
        """The backend job name prefix: ``job_name_prefix``, else ``ms-`` and 8 hex digits of
        keccak(genesis block hash, market address). Two deployments, or a devnet restarted from
        scratch (same market address, new genesis), never share names, so no agent adopts
        another one's jobs."""
        if self.job_name_prefix:
            return self.job_name_prefix
        market = bytes.fromhex(self.require_market().lower().removeprefix("0x"))
        return f"ms-{keccak(genesis_hash + market).hex()[:8]}-"

    def backend_options(self, name_prefix: str) -> dict[str, Any]:
        """Keyword arguments of ``make_backend(self.backend, ...)``."""
        if self.backend == "slurm":
            s = self.slurm
            return {
                "partition": s.partition,
                "output_dir": s.output_dir,
                "slurm_conf": s.slurm_conf,
                "command_timeout_s": s.command_timeout_s,
                "name_prefix": name_prefix,
            }
        loc = self.local
        return {
            "workdir": loc.workdir,
            "cpus": loc.cpus,
            "mem_mb": loc.mem_mb,
            "gpus": loc.gpus,
            "name_prefix": name_prefix,
        }
