"""The soak's grid: the devnet with more providers, short timeouts and a proxy in front of anvil."""

from __future__ import annotations

import os
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from metascheduler.chain import Market
from metascheduler.chain.rpc import connect
from metascheduler.devnet.anvil import dev_account, start_anvil
from metascheduler.devnet.demo import Devnet, slurm_available
from metascheduler.devnet.objectstore import start_object_store
from metascheduler.devnet.procs import Service
from metascheduler.devnet.proxy import TcpProxy
from metascheduler.devnet.soak.common import (
    ADMIN,
    BANNED_PROVIDER,
    CLI_WALLET,
    CREDIT,
    CUSTOMERS,
    HOSTILE,
    LOCAL_CPUS,
    LOCAL_PROVIDERS,
    MAX_REORG_DEPTH,
    ORACLE,
    PRICE_CPU,
    SLURM_PROVIDER,
    SoakOptions,
    say,
)
from metascheduler.devnet.soak.database import SoakDatabase


class SoakGrid(Devnet):
    """The lead's devnet, with more providers, short timeouts and a proxy in front of anvil."""

    def __init__(self, opts: SoakOptions, rng: random.Random):
        super().__init__(opts.root.resolve())
        self.opts = opts
        self.proxy: TcpProxy | None = None
        self.agents: dict[str, Path] = {}  # name -> local backend workdir (None for Slurm)
        #: The provider the `ban` fault bans (its service name).
        self.ban_victim = ""
        self.slurm_conf: Path | None = None
        self.slurm_agent: str | None = None
        self.providers: dict[str, int] = {}  # service name -> dev key index
        # Unique per run, not seeded: runs share Slurm's partition and its completion log, and
        # an agent adopts the jobs carrying its prefix.
        self.name_prefix = f"sk{os.urandom(4).hex()}-"
        self.started_at = time.time()
        self.database: SoakDatabase | None = None

    @property
    def by_name(self) -> dict[str, Service]:
        return {s.name: s for s in self.services}

    def up(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "logs").mkdir(parents=True)
        say(f"soak grid in {self.root}")
        self.anvil = start_anvil(block_time=1, log_path=self.root / "logs" / "anvil.log")
        self.proxy = TcpProxy(("127.0.0.1", self.anvil.port)).start()
        say(f"anvil at {self.anvil.url}; services reach it through the proxy {self.proxy.url}")
        w3 = connect(self.anvil.url)
        dep = Market.deploy(
            w3,
            dev_account(ADMIN),
            oracle=dev_account(ORACLE).address,
            accept_timeout_s=30,
            start_timeout_s=90,
        )
        self.deployment = dep
        self.admin = self.market(ADMIN)
        say(f"JobMarket {dep.market}, Credit {dep.credit} (block {dep.block})")

        hb = self.opts.heartbeat_timeout_s
        base = {"rpc_url": self.proxy.url, "market_address": dep.market, "confirmations": 0}
        self.database = SoakDatabase(self.root, self.name_prefix.rstrip("-"))
        db = self.database.create()
        say(f"store: {self.database.kind}")
        # Logs and outputs go to a real SeaweedFS through the API, as in the demo.
        self.objects = start_object_store(
            self.root / "seaweedfs", log_path=self.root / "logs" / "seaweedfs.log"
        )
        say(f"SeaweedFS S3 at {self.objects.endpoint} (logs and outputs)")
        api_cfg = {
            **base,
            "database_url": db,
            "port": self.api_port,
            "heartbeat_timeout_s": hb,
            "object_store_endpoint": self.objects.endpoint,
        }
        store_keys = {
            "MS_OBJECT_STORE_ACCESS_KEY": self.objects.access_key,
            "MS_OBJECT_STORE_SECRET_KEY": self.objects.secret_key,
        }
        self._service("api", "metascheduler.api", api_cfg, ORACLE, positional=True, env=store_keys)
        self.oracle_cfg: dict[str, Any] = {
            **base,
            "database_url": db,
            "start_block": dep.block,
            "heartbeat_source": "api",
            "heartbeat_timeout_s": hb,
            "keep_interval_s": 5.0,
            "tx_stuck_s": 20.0,
            "rpc_deadline_s": 30.0,
        }
        self._service("oracle", "metascheduler.oracle", self.oracle_cfg, ORACLE)
        agent_base = {
            **base,
            "start_block": dep.block,
            "api_url": f"http://127.0.0.1:{self.api_port}",
            "poll_interval_s": 1.0,
            "heartbeat_interval_s": 3.0,
            "prices": {"cpu": PRICE_CPU, "gpu": 0, "gb": 0},
            "job_name_prefix": self.name_prefix,
            "rpc_deadline_s": 30.0,
            "confirmations": MAX_REORG_DEPTH,
        }
        locals_ = [(f"agent-{n + 1}", key) for n, key in enumerate(LOCAL_PROVIDERS)]
        self.ban_victim = "agent-banned"
        for name, key in [*locals_, (self.ban_victim, BANNED_PROVIDER)]:
            work = self.root / name / "work"
            mem = LOCAL_CPUS * 512
            cfg = {
                **agent_base,
                "backend": "local",
                "state_dir": str(self.root / name),
                "local": {"workdir": str(work), "cpus": LOCAL_CPUS, "mem_mb": mem},
                "hardware": {"nodes": 1, "cpus": LOCAL_CPUS, "mem_mb": mem, "gpus": 0},
            }
            self._service(name, "metascheduler.agent", cfg, key)
            self.agents[name] = work
            self.providers[name] = key
        self.slurm_conf = slurm_available() if self.opts.slurm else None
        if self.slurm_conf:
            name = "agent-slurm"
            cfg = {
                **agent_base,
                "backend": "slurm",
                "state_dir": str(self.root / name),
                "slurm": {
                    "partition": "beta",
                    "slurm_conf": str(self.slurm_conf),
                    "output_dir": str(self.root / name / "jobs"),
                },
            }
            self._service(name, "metascheduler.agent", cfg, SLURM_PROVIDER)
            self.slurm_agent = name
            self.providers[name] = SLURM_PROVIDER
        say(
            f"{len(self.providers)} providers: {', '.join(self.providers)}"
            + ("" if self.slurm_conf else " (no Slurm answered: local backends only)")
        )
        self._approve_providers({dev_account(k).address for k in self.providers.values()}, 90.0)

        def fund(i: int) -> None:
            m = self.market(i)
            self.admin.mint(dev_account(i).address, 1_000 * CREDIT)  # thread-safe nonces
            m.approve(2**256 - 1)
            m.deposit(500 * CREDIT)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(fund, [*CUSTOMERS[: self.opts.customers], CLI_WALLET, HOSTILE]))
        self._wait_api()
        say(f"grid up: API and dashboard at http://127.0.0.1:{self.api_port}/")

    def market(self, index: int) -> Market:
        # The soak's own calls go straight to anvil: a cut proxy must not blind the referee.
        return Market(
            connect(self.anvil.url),
            self.deployment.market,
            dev_account(index),
            receipt_timeout_s=30.0,
            rpc_deadline_s=30.0,
        )

    def agent_config(self, name: str) -> Path:
        return self.root / f"{name}.toml"

    def down(self) -> None:
        super().down()
        if self.proxy is not None:
            self.proxy.stop()
        if self.database is not None:
            self.database.drop()
