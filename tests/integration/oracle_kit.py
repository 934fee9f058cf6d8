"""Helpers shared by the store and oracle tests: wallets, providers, job requests, settings."""

from __future__ import annotations

import json
from pathlib import Path

from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from metascheduler import billing
from metascheduler.chain import JobStatus, Market
from metascheduler.chain.types import Hardware, Prices
from metascheduler.devnet.anvil import dev_account
from metascheduler.oracle.settings import OracleSettings
from metascheduler.spec import encode_spec, validate_spec
from tests.conftest import Grid

CREDIT = billing.UNITS_PER_CREDIT


def spec_bytes(name: str, cpus: int = 1, mem_mb: int = 1024, gpus: int = 0, labels=()) -> bytes:
    spec = validate_spec(
        {
            "name": name,
            "command": ["true"],
            "resources": {"cpus_per_task": cpus, "mem_per_cpu_mb": mem_mb // cpus, "gpus": gpus},
            "labels": list(labels),
            "time_limit_minutes": 60,
        }
    )
    return encode_spec(spec)


def provider(grid: Grid, index: int, hw: Hardware, prices: Prices, labels: list[str]) -> Market:
    """Registers and approves dev account `index` as a provider."""
    prov = grid.market(dev_account(index))
    prov.register_provider(hw, prices, labels)
    grid.market(grid.admin).approve_provider(prov.sender_or_fail().address)
    return prov


def customer(grid: Grid, index: int, credits: int = 1_000) -> Market:
    cust = grid.market(dev_account(index))
    grid.market(grid.admin).mint(cust.sender_or_fail().address, credits * CREDIT)
    cust.approve(2**256 - 1)
    cust.deposit(credits * CREDIT)
    return cust


def request(
    cust: Market,
    name: str,
    *,
    cpus: int = 1,
    mem_mb: int = 1024,
    gpus: int = 0,
    labels=(),
    max_price: int = CREDIT,
    escrow: int = 10 * CREDIT,
) -> int:
    spec = spec_bytes(name, cpus, mem_mb, gpus, labels)
    return cust.request_job(spec, cpus, gpus, mem_mb, max_price_per_minute=max_price, escrow=escrow)


def settings(grid: Grid, db_url: str, **kw: object) -> OracleSettings:
    base: dict[str, object] = dict(
        rpc_url=grid.anvil.url,
        market_address=grid.deployment.market,
        confirmations=0,
        database_url=db_url,
        private_key=SecretStr(grid.oracle.key.hex()),
        start_block=grid.deployment.block,
        keep_interval_s=3600.0,
        rpc_deadline_s=5.0,
    )
    base.update(kw)
    return OracleSettings(**base)  # type: ignore[arg-type]


def write_toml(path: Path, s: OracleSettings) -> Path:
    """The settings as a TOML file (the key included: a test-only devnet key)."""
    lines = []
    for k, v in s.model_dump().items():
        if v is None:
            continue
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        lines.append(f"{k} = {json.dumps(v if not isinstance(v, Path) else str(v))}")
    path.write_text("\n".join(lines) + "\n")
    return path


def placed_events(market: Market, from_block: int) -> dict[int, int]:
    """JobPlaced events per job id, read from the chain."""
    logs = market.w3.eth.get_logs(
        {
            "address": market.address,
            "fromBlock": from_block,
            "toBlock": "latest",
            "topics": [market.events.topic("JobPlaced")],
        }
    )
    counts: dict[int, int] = {}
    for lg in logs:
        ev = market.events.decode(lg)
        assert ev is not None
        counts[ev.args["jobId"]] = counts.get(ev.args["jobId"], 0) + 1
    return counts


def status(market: Market, job_id: int) -> JobStatus:
    return market.get_job(job_id).status


def oracle_key(grid: Grid) -> LocalAccount:
    return grid.oracle
