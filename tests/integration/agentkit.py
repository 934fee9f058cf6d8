"""A small world for agent tests: a fresh market on the session's anvil, a funded customer, the
oracle placing jobs by hand (the oracle service is not needed), and an agent driven round by
round with ``tick()``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from metascheduler import billing
from metascheduler.agent.service import Agent, Round, build
from metascheduler.agent.settings import AgentSettings
from metascheduler.chain import JobStatus, Market, Terms
from metascheduler.chain.events import ChainEvent
from metascheduler.chain.types import JobView, ProviderStatus
from metascheduler.devnet.anvil import dev_account
from metascheduler.spec import encode_spec, parse_spec
from tests.conftest import Grid

REPO = Path(__file__).resolve().parents[2]
CREDIT = billing.UNITS_PER_CREDIT
#: 60,000 units per CPU-minute: 1,000 units per CPU-second, so a 1-CPU job's escrow of
#: 1 credit pays for 1,000 s.
CPU_PRICE = 60_000
T = TypeVar("T")


@dataclass
class World:
    grid: Grid
    provider: LocalAccount
    customer: Market
    oracle: Market
    admin: Market
    settings: AgentSettings
    agent: Agent
    reader: Market
    rounds: list[Round] = field(default_factory=list)

    # -------------------------------------------------------------- customer and oracle

    def request(
        self, spec_yaml: str, escrow: int = CREDIT, max_price: int = 10 * CPU_PRICE
    ) -> tuple[int, bytes]:
        spec = parse_spec(spec_yaml)
        data = encode_spec(spec)
        return self.request_raw(data, spec.cpus, spec.gpus, spec.mem_mb, escrow, max_price), data

    def request_raw(
        self, data: bytes, cpus: int, gpus: int, mem_mb: int, escrow: int, max_price: int
    ) -> int:
        job_id = self.customer.request_job(
            data, cpus, gpus, mem_mb, max_price_per_minute=max_price, escrow=escrow
        )
        self._terms[job_id] = Terms.for_spec(data, cpus, gpus, mem_mb, max_price)
        return job_id

    def place(self, job_id: int) -> None:
        self.oracle.place_job(job_id, self.provider.address, self._terms[job_id])

    def submit(self, spec_yaml: str, escrow: int = CREDIT) -> int:
        job_id, _ = self.request(spec_yaml, escrow)
        self.place(job_id)
        return job_id

    # -------------------------------------------------------------- driving the agent

    def tick(self) -> Round:
        rnd = self.agent.tick()
        self.rounds.append(rnd)
        return rnd

    def tick_until(
        self,
        what: str,
        cond: Callable[[], T | None],
        deadline_s: float = 60.0,
        pause_s: float = 0.2,
    ) -> T:
        """Rounds until ``cond()`` is truthy (a deadline guards against hanging, not timing)."""
        end = time.monotonic() + deadline_s
        while True:
            self.tick()
            got = cond()
            if got:
                return got
            if time.monotonic() > end:
                raise AssertionError(f"gave up waiting for {what} after {deadline_s:g} s")
            time.sleep(pause_s)

    def job(self, job_id: int) -> JobView:
        return self.reader.get_job(job_id)

    def until_status(self, job_id: int, *statuses: JobStatus, deadline_s: float = 60.0) -> JobView:
        return self.tick_until(
            f"job {job_id} to reach {'/'.join(s.name for s in statuses)}",
            lambda: v if (v := self.job(job_id)).status in statuses else None,
            deadline_s,
        )

    # -------------------------------------------------------------- reading the chain

    def events(self, job_id: int, name: str | None = None) -> list[ChainEvent]:
        m = self.reader
        logs = m.w3.eth.get_logs(
            {
                "address": m.address,
                "fromBlock": self.grid.deployment.block,
                "toBlock": "latest",
                "topics": [None, f"0x{job_id:064x}"],
            }
        )
        out = [e for e in (m.events.decode(raw) for raw in logs) if e is not None]
        return [e for e in out if name is None or e.name == name]

    def block_time(self, block: int) -> int:
        return int(self.reader.w3.eth.get_block(block)["timestamp"])

    def run_window(self, job_id: int) -> tuple[int, int]:
        """Where the contract started metering the job and what it billed up to: the backend's
        start and end as the agent reported them, bounded by the contract (for a cancel or an
        expiry, the end is the block's time)."""
        (start,) = [
            e for e in self.events(job_id, "JobStatusChanged") if e.args["to"] == JobStatus.RUNNING
        ]
        (end,) = self.events(job_id, "JobEnded")
        return int(start.args["since"]), int(end.args["billedUntil"])

    def advance_chain(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", seconds)
        self.rpc("evm_mine")

    def rpc(self, method: str, *params: Any) -> Any:
        """A local node's test method (evm_snapshot, evm_revert, evm_setAutomine, ...); fails
        loudly."""
        reply = self.reader.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
        assert "error" not in reply, f"{method}{params}: {reply['error']}"
        return reply["result"]

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert_chain(self, snapshot: str) -> None:
        """Undo every block since ``snapshot``, as a reorg that dropped their transactions
        would; then mine one block so that the chain moves on from there."""
        assert self.rpc("evm_revert", snapshot) is True
        self.rpc("evm_mine")

    _terms: dict[int, Terms] = field(default_factory=dict)


def agent_settings(grid: Grid, provider: LocalAccount, tmp: Path, **over: Any) -> AgentSettings:
    base: dict[str, Any] = {
        "rpc_url": grid.anvil.url,
        "market_address": grid.deployment.market,
        "private_key": SecretStr("0x" + bytes(provider.key).hex()),
        "confirmations": 0,
        "start_block": grid.deployment.block,
        "backend": "local",
        "local": {"workdir": tmp / "local", "cpus": 2, "mem_mb": 2048},
        "hardware": {"nodes": 1, "cpus": 4, "gpus": 0, "mem_mb": 4096},
        "prices": {"cpu": CPU_PRICE, "gpu": 0, "gb": 0},
        "labels": ["x86_64"],
        "state_dir": tmp / "state",
        "poll_interval_s": 0.2,
        "time_limit_grace_s": 30,
        "rpc_deadline_s": 10.0,
    }
    base.update(over)
    return AgentSettings(**base)


def make_world(
    grid: Grid, tmp: Path, *, provider_index: int = 2, customer_index: int = 3, **over: Any
) -> World:
    provider = dev_account(provider_index)
    customer_acct = dev_account(customer_index)
    admin = grid.market(grid.admin)
    customer = grid.market(customer_acct)
    admin.mint(customer_acct.address, 100 * CREDIT)
    customer.approve(2**256 - 1)
    customer.deposit(100 * CREDIT)
    settings = agent_settings(grid, provider, tmp, **over)
    agent = build(settings)
    if agent.start() is ProviderStatus.REGISTERED:
        admin.approve_provider(provider.address)
    return World(
        grid=grid,
        provider=provider,
        customer=customer,
        oracle=grid.market(grid.oracle),
        admin=admin,
        settings=settings,
        agent=agent,
        reader=grid.market(),
    )


def spec(script: str, *, cpus: int = 1, mem_per_cpu_mb: int = 100, labels: str = "[]") -> str:
    return (
        f"name: test\nscript: {script!r}\n"
        f"resources: {{cpus_per_task: {cpus}, mem_per_cpu_mb: {mem_per_cpu_mb}}}\n"
        f"labels: {labels}\n"
    )


# ------------------------------------------------------------------ the agent as a process


def write_toml(settings: AgentSettings, path: Path) -> Path:
    """The settings as a TOML file, as an operator would write it (key included: a test key)."""
    data = settings.model_dump(mode="json", exclude_none=True)
    assert settings.private_key is not None
    data["private_key"] = settings.private_key.get_secret_value()
    data.pop("keystore_password", None)
    lines: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append(f"[{key}]")
            tables += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines + tables) + "\n")
    return path


def start_agent_process(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m metascheduler.agent --config FILE``, as an operator starts it."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "metascheduler.agent", "--config", str(config)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("MS_")},
        )


def wait_running_then_sigkill(
    w: World, job_id: int, proc: subprocess.Popen[bytes], log_path: Path
) -> None:
    """Waits until the agent process reported the job RUNNING, then kills it with SIGKILL."""
    try:
        deadline = time.monotonic() + 60
        while w.job(job_id).status is not JobStatus.RUNNING:
            assert proc.poll() is None, f"agent exited early:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"job never ran:\n{log_path.read_text()}"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def slurm_conf_or_skip() -> str:
    """The one-node Slurm of scripts/slurm.sh, or a skip that says how to start it."""
    conf = os.environ.get("SLURM_CONF") or str(REPO / "var" / "slurm" / "slurm.conf")
    if shutil.which("sbatch") is None:
        pytest.skip(
            "no Slurm here (sbatch not found): run `bash scripts/slurm.sh install-and-start`"
        )
    if not Path(conf).exists():
        pytest.skip(f"no Slurm config at {conf}: run `bash scripts/slurm.sh install-and-start`")
    ping = subprocess.run(
        ["scontrol", "ping"],
        env={**os.environ, "SLURM_CONF": conf},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if ping.returncode != 0 or "UP" not in ping.stdout:
        pytest.skip(f"slurmctld not answering ({ping.stdout.strip()}): run scripts/slurm.sh")
    return conf
