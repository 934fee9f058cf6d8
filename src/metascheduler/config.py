"""Settings: one typed object per service, read once at start-up and passed down.

Sources, highest priority first: keyword arguments, the environment (prefix ``MS_``), an optional
TOML file given by path, then the defaults. No other module reads the environment.

    settings = OracleSettings.load("oracle.toml")     # or load(None): environment only

Each service's settings class is built from the shared parts below, taking only those it reads:
``ChainSettings`` (where the market is), ``HistorySettings`` (following the market's events),
``SignerSettings`` (the key transactions are signed with) and ``StoreSettings`` (the database).
The services' classes live with them: ``oracle.settings``, ``agent.settings``, ``api.settings``.
The CLI's options (``cli.app``) read the chain part's ``MS_`` variables too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from metascheduler.errors import InputError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from metascheduler.chain.deployment import Deployment

log = logging.getLogger(__name__)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class SettingsError(InputError):
    """The settings file or environment is unusable; the message says which and why."""

    kind = "settings"


class Settings(BaseSettings):
    """What every service's settings share: their sources, ``load`` and the log level."""

    model_config = SettingsConfigDict(
        env_prefix="MS_",
        extra="forbid",
        validate_default=True,
    )

    #: Keys of the shared parts that this service does not read, taken (with a warning) from
    #: files and arguments written when every service took every part. Any other unknown key is
    #: refused.
    unread: ClassVar[frozenset[str]] = frozenset()

    log_level: LogLevel = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _drop_unread(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not cls.unread:
            return data
        dropped = sorted(k for k in data if k in cls.unread)
        if dropped:
            log.warning(
                "settings: %s not read by %s, ignored: remove %s",
                ", ".join(dropped),
                cls.__name__,
                "it" if len(dropped) == 1 else "them",
            )
        return {k: v for k, v in data.items() if k not in cls.unread}

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


class ChainSettings(Settings):
    """Where the market is: the node's endpoint and the market's address, or the deployment
    file that names both the market and its chain."""

    rpc_url: str = "http://127.0.0.1:8545"
    market_address: str | None = None
    #: The file `metascheduler deploy` wrote, in place of market_address (and start_block, for a
    #: service that reads the market's history): the service refuses another chain.
    deployment: Path | None = None
    #: Seconds one JSON-RPC call may take.
    rpc_timeout_s: float = Field(default=10.0, gt=0)

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
        self.take_deployment(dep)
        return self

    def take_deployment(self, dep: Deployment) -> None:
        """What a service takes from the deployment file besides the market's address."""

    def check_chain(self, chain_id: int) -> None:
        """Refuses a chain other than the deployment file's (when one is set)."""
        if self.deployment is None:
            return
        from metascheduler.chain.deployment import DeploymentError, load_deployment

        try:
            load_deployment(self.deployment).check_chain(chain_id, f"file {self.deployment}")
        except DeploymentError as exc:
            raise SettingsError(str(exc)) from None

    def require_market(self) -> str:
        if not self.market_address:
            raise SettingsError(
                "market_address is not set: put it in the settings file or MS_MARKET_ADDRESS"
            )
        return self.market_address

    def web3(self) -> Web3:
        """A client of the node (it connects on its first call)."""
        from metascheduler.chain.rpc import connect

        return connect(self.rpc_url, timeout_s=self.rpc_timeout_s)


class HistorySettings(ChainSettings):
    """A service that follows the market's events: from which block, how deep a log must be
    buried before it counts, and how long an RPC outage may last."""

    #: Blocks a log must be buried under before the service trusts it (0 on a devnet).
    confirmations: int = Field(default=2, ge=0)
    #: First block to read (the market's deployment block).
    start_block: int = Field(default=0, ge=0)
    #: Widest eth_getLogs block range asked for.
    getlogs_max_range: int = Field(default=10_000, ge=1)
    #: Seconds one RPC outage may last before the service's tick or round gives up (the next
    #: one retries).
    rpc_deadline_s: float = Field(default=60.0, gt=0)

    def take_deployment(self, dep: Deployment) -> None:
        # Services that read the chain's history start at the market's deployment block.
        if "start_block" not in self.model_fields_set:
            self.start_block = dep.block


class SignerSettings(Settings):
    """The key the service signs its transactions with (keystore first), and how long it waits
    for one to be mined."""

    keystore: Path | None = None
    keystore_password: SecretStr | None = None
    private_key: SecretStr | None = None
    #: Seconds one transaction's receipt is waited for. One not mined by then (dropped by a
    #: reorg, stuck behind a missing nonce) ends the sending; the nonce is read again from the
    #: node and the work is derived again from the chain. Short, since a long wait on a dropped
    #: transaction would hold up the rest: the oracle's ticks share one lock, and placement too
    #: would freeze.
    receipt_timeout_s: float = Field(default=20.0, gt=0)

    def account(self) -> LocalAccount:
        """The account, read from the keystore file or the key (KeyLoadError when unusable)."""
        from metascheduler.keys import load_account

        return load_account(
            keystore=self.keystore, password=self.keystore_password, private_key=self.private_key
        )


class StoreSettings(Settings):
    """The database of chain facts the oracle writes and the API reads."""

    #: SQLAlchemy URL. The API reads the store the oracle writes, so both open the oracle's file.
    database_url: str = "sqlite:///var/oracle.db"
