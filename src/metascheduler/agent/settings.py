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

from metascheduler.agent.backends.sandbox import SandboxPolicy
from metascheduler.agent.envelope.cache import ImageCache
from metascheduler.agent.envelope.runtime import make_runtime
from metascheduler.agent.envelope.staging import Stager, StagingLimits
from metascheduler.config import HistorySettings, SignerSettings
from metascheduler.spec import CONTAINER_LABEL


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
    #: Which program supervises each job: "auto" (the C supervisor where this host can build
    #: it, else the Python one, said once in the log), "c" (that or an error), "python".
    supervisor: Literal["auto", "c", "python"] = "auto"


class SandboxSettings(_Section):
    """How every job is confined (``docs/security.md``). The agent must run as root to apply it."""

    #: The unprivileged user jobs run as: not root, not the agent's own
    #: (``bash scripts/sandbox.sh install`` creates ``msjob``).
    user: str = Field(default="msjob", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    #: When this host cannot sandbox a job: False (the default) refuses the job with the reason;
    #: True runs it unconfined, as the agent's user, able to read what the agent can read.
    allow_unconfined: bool = False
    #: "none" (the default): a job has only its own loopback; "host": the host's network.
    network: Literal["none", "host"] = "none"
    #: Processes and threads one job may hold at once (stops a fork bomb).
    max_processes: int = Field(default=512, ge=16, le=1_000_000)
    #: More files or folders jobs must not see, besides the agent's state folder, keystore,
    #: settings file and every job folder (always hidden).
    hide: list[Path] = Field(default_factory=list)


class StagingSettings(_Section):
    """What a job brings: its input files and its container image, fetched before it starts
    (not billed) and checked against the SHA-256 its spec pins."""

    #: The container runtime jobs with a ``container`` run under (unset: no container jobs).
    #: Setting it adds the labels ``container`` and ``runtime:<name>`` to the provider's.
    runtime: Literal["podman"] | None = None
    #: Image archives, cached by digest; the least recently used go beyond ``cache_max_mb``.
    cache_dir: Path = Path("var/agent/images")
    cache_max_mb: int = Field(default=10_240, ge=1)
    max_image_mb: int = Field(default=2_048, ge=1)
    max_input_mb: int = Field(default=1_024, ge=1)
    #: Longest time all of one job's fetches (inputs and image) may take together. Staging
    #: runs in the agent's round: keep it well below the oracle's heartbeat timeout.
    fetch_timeout_s: float = Field(default=120.0, gt=0)


class ResultsSettings(_Section):
    """Job logs and outputs, encrypted to each job's customer and shipped to ``api_url``."""

    enabled: bool = True
    #: Where logs wait until the API acknowledges them, and jobs write their outputs
    #: (``$MS_OUTPUT_DIR``): on Slurm, a folder the compute nodes can write. None: under
    #: ``state_dir``.
    dir: Path | None = None
    #: The provider's cap on one job's output files (the grid's API has its own).
    max_output_bytes: int = Field(default=10 * 2**30, ge=0)
    #: Seconds between two looks at the jobs' output streams.
    ship_interval_s: float = Field(default=0.1, gt=0)
    #: Longest a finished job's COMPLETE waits for its outputs to be stored and its log closed,
    #: so that it carries their digest; the job stays RUNNING, and metered, meanwhile: this bounds
    #: what the customer pays for time that is not compute (``docs/security.md``).
    complete_wait_s: float = Field(default=30.0, ge=0)
    #: Most lines in one log chunk (a chatty job's lines go in several).
    max_chunk_lines: int = Field(default=20_000, ge=1)


class AgentSettings(HistorySettings, SignerSettings):
    """One provider agent: the chain's history and a signer (``metascheduler.config``), its
    backend, what it declares on chain, and how often it acts."""

    model_config = SettingsConfigDict(
        env_prefix="MS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )
    #: The agent keeps no database (its state is a file in ``state_dir``).
    unread = frozenset({"database_url"})

    backend: Literal["slurm", "local"] = "local"
    slurm: SlurmSettings = SlurmSettings()
    local: LocalSettings = LocalSettings()

    sandbox: SandboxSettings = SandboxSettings()
    staging: StagingSettings = StagingSettings()

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

    @model_validator(mode="after")
    def _runtime_labels(self) -> AgentSettings:
        # What the provider offers is what placement matches: a runtime is advertised.
        runtime = self.staging.runtime
        if runtime is not None:
            self.labels = sorted({*self.labels, CONTAINER_LABEL, f"runtime:{runtime}"})
        return self

    #: The agent's own small state (chain cursor, job -> backend id, heartbeat seq) lives here.
    state_dir: Path = Path("var/agent")
    #: Longest wait between two rounds of following the chain and the backend (a new block, or
    #: a job of the backend that ended, starts a round at once).
    poll_interval_s: float = Field(default=2.0, gt=0)
    #: Oracle API base URL for signed heartbeats (``POST {api_url}/api/heartbeats``); unset: none.
    api_url: str | None = None
    heartbeat_interval_s: float = Field(default=15.0, gt=0)
    heartbeat_timeout_s: float = Field(default=5.0, gt=0)
    results: ResultsSettings = ResultsSettings()

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
    #: A placed job whose escrow pays less than this many seconds at its price is refused: its
    #: ACCEPT, START and COMPLETE would cost the provider more gas than it pays (the oracle
    #: offers no such job; this guards against one placed all the same). 0: take any.
    min_run_s: int = Field(default=60, ge=0)

    #: How far back the cursor rewinds when the chain reorganised under it.
    reorg_rewind_blocks: int = Field(default=64, ge=1)

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

    def sandbox_policy(self) -> SandboxPolicy:
        """The sandbox of every job, hiding the agent's own files from it."""
        sb = self.sandbox
        settings_file = self.model_config.get("toml_file")
        own = [self.state_dir, self.keystore, self.staging.cache_dir]
        if isinstance(settings_file, str | Path):
            own.append(Path(settings_file))
        return SandboxPolicy(
            user=sb.user,
            allow_unconfined=sb.allow_unconfined,
            network=sb.network == "host",
            max_processes=sb.max_processes,
            hide=tuple(p.resolve() for p in [*own, *sb.hide] if p is not None),
        )

    def stager(self) -> Stager:
        st = self.staging
        return Stager(
            limits=StagingLimits(
                max_input_bytes=st.max_input_mb << 20,
                max_image_bytes=st.max_image_mb << 20,
                fetch_timeout_s=st.fetch_timeout_s,
            ),
            cache=ImageCache(st.cache_dir.resolve(), st.cache_max_mb << 20),
            runtime=make_runtime(st.runtime) if st.runtime else None,
        )

    def backend_options(self, name_prefix: str) -> dict[str, Any]:
        """Keyword arguments of ``make_backend(self.backend, ...)``: the fields of the backend's
        own section (named as its constructor's arguments), and what every backend takes."""
        section: _Section = self.slurm if self.backend == "slurm" else self.local
        return {
            **section.model_dump(),
            "name_prefix": name_prefix,
            "sandbox": self.sandbox_policy(),
            "stager": self.stager(),
        }

    def results_dir(self) -> Path:
        return self.results.dir if self.results.dir is not None else self.state_dir / "results"
