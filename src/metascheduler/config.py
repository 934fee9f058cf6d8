"""Settings: one typed object per service, read once at start-up and passed down.

Sources, highest priority first: keyword arguments, the environment (prefix ``MS_``), an optional
TOML file given by path, then the defaults below. No other module reads the environment.

    settings = OracleSettings.load("oracle.toml")     # or load(None): environment only

The shared base (`ServiceSettings`) holds what every service needs to reach the chain, the store
and its key; each service subclasses it with its own fields (OracleSettings here, others in their
packages).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from metascheduler.errors import InputError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class SettingsError(InputError):
    """The settings file or environment is unusable; the message says which and why."""

    kind = "settings"


class ServiceSettings(BaseSettings):
    """Fields shared by the oracle, the API, the agent and the CLI."""

    model_config = SettingsConfigDict(
        env_prefix="MS_",
        extra="forbid",
        validate_default=True,
    )

    rpc_url: str = "http://127.0.0.1:8545"
    market_address: str | None = None
    #: Blocks a log must be buried under before the store trusts it (0 on a devnet).
    confirmations: int = Field(default=2, ge=0)
    database_url: str = "sqlite:///var/metascheduler.db"
    keystore: Path | None = None
    keystore_password: SecretStr | None = None
    private_key: SecretStr | None = None
    log_level: LogLevel = "INFO"
    #: The file `metascheduler deploy` wrote, in place of market_address and start_block: the
    #: service takes the market and its deployment block from it, and refuses another chain.
    deployment: Path | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _from_deployment(self) -> Self:
        if self.deployment is None:
            return self
        from metascheduler.chain.deployment import load_deployment

        dep = load_deployment(self.deployment)
        if self.market_address and self.market_address.lower() != dep.market.lower():
            raise ValueError(
                f"market_address {self.market_address} differs from the market {dep.market} in "
                f"the deployment file {self.deployment}: give one or the other"
            )
        self.market_address = dep.market
        fields = type(self).model_fields
        # Services that read the chain's history start at the market's deployment block.
        if "start_block" in fields and "start_block" not in self.model_fields_set:
            setattr(self, "start_block", dep.block)  # noqa: B010 (a field of some subclasses)
        # The API checks the chain id that heartbeats name.
        if "chain_id" in fields:
            given = getattr(self, "chain_id")  # noqa: B009
            if given is not None and given != dep.chain_id:
                raise ValueError(
                    f"chain_id {given} differs from the chain id {dep.chain_id} of the "
                    f"deployment file {self.deployment}: give one or the other"
                )
            setattr(self, "chain_id", dep.chain_id)  # noqa: B010
        return self

    def check_chain(self, chain_id: int) -> None:
        """Refuses a chain other than the deployment file's (when one is set)."""
        if self.deployment is None:
            return
        from metascheduler.chain.deployment import DeploymentError, load_deployment

        try:
            load_deployment(self.deployment).check_chain(chain_id, f"file {self.deployment}")
        except DeploymentError as exc:
            raise SettingsError(str(exc)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @classmethod
    def load(cls, config_path: str | Path | None = None, **overrides: Any) -> Self:
        """Reads the settings once: `config_path` (TOML, optional) under the environment."""
        target: type[Self] = cls
        if config_path is not None:
            path = Path(config_path)
            if not path.is_file():
                raise SettingsError(f"settings file {path} not found: give an existing TOML file")
            # A subclass carrying the file keeps the class itself free of per-call state.
            target = type(
                cls.__name__,
                (cls,),
                {"model_config": {**cls.model_config, "toml_file": path}, "__module__": __name__},
            )
        try:
            return target(**overrides)
        except ValidationError as exc:
            where = f"file {config_path} and " if config_path else ""
            # Never quote the offending values: a misspelt `privat_key = "0x..."` is a key.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(settings)'}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)
            )
            raise SettingsError(
                f"invalid settings (from {where}environment MS_*): {problems}"
            ) from None
        except ValueError as exc:
            where = f"file {config_path} and " if config_path else ""
            raise SettingsError(f"invalid settings (from {where}environment MS_*): {exc}") from None

    def require_market(self) -> str:
        if not self.market_address:
            raise SettingsError(
                "market_address is not set: put it in the settings file or MS_MARKET_ADDRESS"
            )
        return self.market_address


class OracleSettings(ServiceSettings):
    """The oracle service: ingestion, placement and housekeeping ticks."""

    database_url: str = "sqlite:///var/oracle.db"
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
    #: Seconds a housekeeping transaction (expire, reclaim, fail) is waited for. The ticks share
    #: one lock, so a long wait on a dropped transaction would freeze placement too; a timed-out
    #: send resyncs the nonce and the next keep tick derives the work again from the chain.
    receipt_timeout_s: float = Field(default=20.0, gt=0)
    #: Where provider heartbeats come from: "api" (the providers table, which the API updates
    #: when agents POST heartbeats) or "none" (no heartbeat system: every provider is alive).
    heartbeat_source: Literal["none", "api"] = "none"
    #: Seconds without a heartbeat after which a provider's RUNNING jobs are failed and refunded.
    heartbeat_timeout_s: float = Field(default=300.0, gt=0)
    #: Ingestion: first block to read (the market's deployment block), and eth_getLogs ranges.
    start_block: int = Field(default=0, ge=0)
    getlogs_initial_range: int = Field(default=500, ge=1)
    getlogs_max_range: int = Field(default=10_000, ge=1)
    #: How many recent block hashes the store keeps to detect reorgs.
    reorg_window: int = Field(default=128, ge=4)
    #: Seconds the oracle waits for an RPC outage to end before a tick gives up (it retries
    #: on the next tick anyway).
    rpc_deadline_s: float = Field(default=60.0, gt=0)
    rpc_timeout_s: float = Field(default=10.0, gt=0)
