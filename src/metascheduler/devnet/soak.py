"""The soak: a whole local grid under load and faults, then a verdict on what it promised.

    metascheduler.devnet.soak.run_soak(SoakOptions(minutes=10, seed=1)) -> exit code

Brings up anvil (1-second blocks), the contracts, the API, the oracle and provider agents
(three on the local backend, one on Slurm partition beta when Slurm answers), every service
reaching anvil through a `TcpProxy` that the fault injector can cut. Customers submit a stream
of jobs (finishing, failing, cancelled at random points, running out of credits, topped up)
while the injector, from a seeded generator, SIGKILLs and restarts the oracle and agents (some
agents only after the oracle's heartbeat timeout), cuts the RPC, reorganises the chain with
`anvil_reorg` (up to `MAX_REORG_DEPTH` blocks; the agents wait for that many confirmations, the
oracle for none) and throws malformed input at the API and the CLI. Then the grid drains and the
last line printed is one JSON object (see `Verdict`); exit 0 only when nothing was lost or run
twice, credits are conserved, the audit is clean and no door answered 5xx or misbehaved.

Anvil's development keys are public; they are used here on the devnet only.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from web3 import Web3

from metascheduler import billing
from metascheduler.agent.backends.base import parse_job_name
from metascheduler.agent.backends.slurm import SACCT_FIELDS, parse_sacct
from metascheduler.chain import JobStatus, Market
from metascheduler.chain.events import ChainEvent
from metascheduler.chain.rpc import connect
from metascheduler.devnet.anvil import dev_account, start_anvil
from metascheduler.devnet.demo import Devnet, slurm_available
from metascheduler.devnet.procs import Service
from metascheduler.devnet.proxy import TcpProxy
from metascheduler.heartbeat import Heartbeat, sign
from metascheduler.spec import encode_spec, parse_spec

CREDIT = billing.UNITS_PER_CREDIT
ADMIN, ORACLE = 0, 1
LOCAL_PROVIDERS = (2, 3, 4)
SLURM_PROVIDER = 5
CUSTOMERS = tuple(range(8, 18))
CLI_WALLET = 19  # used only by the malformed-CLI fault: its nonce proves nothing was sent
PRICE_CPU = 1_000  # units per CPU-minute: a 1-CPU job costs 16.7 units a second
MAX_PRICE = 5_000
#: The deepest reorg the injector makes, and so the agents' confirmations: an agent acts on a
#: placement, and gives a job to its backend, only once they are this many blocks deep, which
#: no injected reorg reaches. (At 0 a reorg that drops the oracle's placement after the job
#: started would make it run twice, once here and once where it is placed again: the setting
#: the docs prescribe is confirmations at or above the expected reorg depth.)
MAX_REORG_DEPTH = 5


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class SoakOptions:
    minutes: float = 10.0
    seed: int = 1
    root: Path = Path("var/soak")
    customers: int = 8
    #: Mean seconds between two jobs of one customer.
    job_interval_s: float = 20.0
    #: Mean seconds between two faults (default: about 40 faults over the run, at least every 8 s
    #: in short runs so that each kind happens once).
    fault_interval_s: float | None = None
    drain_timeout_s: float = 240.0
    heartbeat_timeout_s: float = 20.0
    slurm: bool = True
    progress_s: float = 10.0


# ---------------------------------------------------------------------- the grid


class SoakGrid(Devnet):
    """The lead's devnet, with more providers, short timeouts and a proxy in front of anvil."""

    def __init__(self, opts: SoakOptions, rng: random.Random):
        super().__init__(opts.root.resolve())
        self.opts = opts
        self.proxy: TcpProxy | None = None
        self.agents: dict[str, Path] = {}  # name -> local backend workdir (None for Slurm)
        self.slurm_conf: Path | None = None
        self.slurm_agent: str | None = None
        self.providers: dict[str, int] = {}  # service name -> dev key index
        # Unique per run, not seeded: runs share Slurm's partition and its completion log, and
        # an agent adopts the jobs carrying its prefix.
        self.name_prefix = f"sk{os.urandom(4).hex()}-"
        self.started_at = time.time()

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
        db = f"sqlite:///{self.root / 'grid.db'}"
        self._service(
            "api",
            "metascheduler.api",
            {**base, "database_url": db, "port": self.api_port, "heartbeat_timeout_s": hb},
            ORACLE,
            positional=True,
        )
        self.oracle_cfg = {
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
        for n, key in enumerate(LOCAL_PROVIDERS):
            name = f"agent-{n + 1}"
            work = self.root / name / "work"
            cfg = {
                **agent_base,
                "backend": "local",
                "state_dir": str(self.root / name),
                "local": {"workdir": str(work), "cpus": 4, "mem_mb": 8192},
                "hardware": {"nodes": 1, "cpus": 4, "mem_mb": 8192, "gpus": 0},
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
            list(pool.map(fund, [*CUSTOMERS[: self.opts.customers], CLI_WALLET]))
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

    def down(self) -> None:
        super().down()
        if self.proxy is not None:
            self.proxy.stop()


# ---------------------------------------------------------------------- the job stream


def _spec(name: str, script: str, minutes: int = 10) -> bytes:
    text = json.dumps(
        {
            "name": name,
            "script": script,
            "resources": {"tasks": 1, "cpus_per_task": 1, "mem_per_cpu_mb": 256},
            "time_limit_minutes": minutes,
        }
    )
    return encode_spec(parse_spec(text))


#: kind -> weight in the stream
JOB_KINDS = {"finish": 35, "fail": 15, "cancel": 20, "dry": 15, "topup": 15}


class Workload:
    """One thread per customer wallet, each submitting jobs at random intervals."""

    def __init__(self, grid: SoakGrid, opts: SoakOptions, seed: int):
        self.grid = grid
        self.opts = opts
        self.seed = seed
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.submitted: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for n, idx in enumerate(CUSTOMERS[: self.opts.customers]):
            t = threading.Thread(
                target=self._customer, args=(idx, random.Random(self.seed * 1000 + n)), daemon=True
            )
            t.start()
            self.threads.append(t)

    def join(self, timeout_s: float = 90.0) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def _customer(self, idx: int, rng: random.Random) -> None:
        market = self.grid.market(idx)
        kinds, weights = zip(*JOB_KINDS.items(), strict=True)
        while not self.stop.wait(rng.expovariate(1 / self.opts.job_interval_s)):
            kind = rng.choices(kinds, weights)[0]
            try:
                self._one(market, kind, rng)
            except Exception as exc:
                self._error(f"{kind} by wallet {idx}", exc)
                try:
                    assert market.sender is not None
                    market.sender.resync_nonce()
                except Exception as exc2:
                    self._error(f"resync of wallet {idx}", exc2)

    def _error(self, what: str, exc: Exception) -> None:
        with self.lock:
            self.errors[type(exc).__name__] += 1
            if len(self.error_samples) < 30:
                self.error_samples.append(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")

    def _submit(self, market: Market, kind: str, script: str, escrow: int) -> int:
        job_id = market.request_job(_spec(f"soak-{kind}", script), 1, 0, 256, MAX_PRICE, escrow)
        with self.lock:
            self.submitted[kind] += 1
        return job_id

    def _one(self, market: Market, kind: str, rng: random.Random) -> None:
        if kind == "finish":
            self._submit(market, kind, f"echo soak; sleep {rng.randint(1, 6)}", CREDIT // 10)
        elif kind == "fail":
            code = rng.choice([1, 2, 3, 42])
            self._submit(market, kind, f"sleep {rng.randint(1, 4)}; exit {code}", CREDIT // 10)
        elif kind == "cancel":
            # Bounded even if the cancel never lands: the script ends by itself in 2 minutes.
            job_id = self._submit(market, kind, "sleep 120", CREDIT // 10)
            self.stop.wait(rng.uniform(0, 25))  # when the soak stops, cancel at once
            self._act(market, job_id, "cancel", lambda: market.cancel_job(job_id))
        elif kind == "dry":
            # 150-400 units at 1,000 units/minute: 9-24 s of compute, then OUT_OF_CREDITS.
            self._submit(market, kind, "sleep 600", rng.randint(150, 400))
        elif kind == "topup":
            job_id = self._submit(market, kind, "sleep 600", 300)
            self.stop.wait(rng.uniform(1, 15))
            amount = rng.randint(100, 300)
            self._act(market, job_id, "top-up", lambda: market.top_up(job_id, amount))

    def _act(self, market: Market, job_id: int, what: str, fn: Callable[[], Any]) -> None:
        if market.get_job(job_id).status.terminal:
            with self.lock:
                self.actions[f"{what} skipped (already ended)"] += 1
            return
        try:
            fn()
            with self.lock:
                self.actions[what] += 1
        except Exception as exc:
            # The job may have ended between the read and the transaction: a revert is fine.
            with self.lock:
                self.actions[f"{what} refused ({type(exc).__name__})"] += 1


# ---------------------------------------------------------------------- faults


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    """A raw JSON-RPC call (anvil's own methods have no web3 wrapper)."""
    r: dict[str, Any] = dict(w3.provider.make_request(method, params))  # type: ignore[arg-type]
    if r.get("error"):
        raise RuntimeError(f"{method} failed: {r['error']}")
    return r.get("result")


FAULT_KINDS = ("oracle_kill", "agent_kill", "rpc_cut", "reorg", "api_garbage", "cli_garbage")


class Injector:
    """Faults at random times from one seeded generator; restorations run from the same loop."""

    def __init__(self, grid: SoakGrid, opts: SoakOptions, rng: random.Random):
        self.grid = grid
        self.opts = opts
        self.rng = rng
        self.stop = threading.Event()
        self.faults: Counter[str] = Counter()
        self.api_5xx: list[str] = []
        self.api_accepted: list[str] = []
        self.cli_wrong: list[str] = []
        self.notes: list[str] = []
        self._restores: list[tuple[float, str, Callable[[], None]]] = []
        self._down: set[str] = set()
        self._agent_kills = 0
        self.thread = threading.Thread(target=self._loop, name="injector", daemon=True)
        seconds = opts.minutes * 60
        self.interval = opts.fault_interval_s or max(4.0, min(15.0, seconds / 40))
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{grid.api_port}", timeout=10)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        """Stops injecting and brings every service and the RPC back at once."""
        self.stop.set()
        self.thread.join(120)
        for _, what, fn in sorted(self._restores, key=lambda r: r[0]):
            self._run_restore(what, fn)
        self._restores.clear()

    def _note(self, msg: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {msg}")

    def _loop(self) -> None:
        # Every kind once first, in a seeded order, so a short run covers them all.
        queue = list(FAULT_KINDS)
        self.rng.shuffle(queue)
        next_at = time.monotonic() + self.rng.uniform(2, self.interval)
        while not self.stop.wait(0.25):
            now = time.monotonic()
            for r in [r for r in self._restores if r[0] <= now]:
                self._restores.remove(r)
                self._run_restore(r[1], r[2])
            if now < next_at:
                continue
            kind = queue.pop(0) if queue else self.rng.choice(FAULT_KINDS)
            try:
                if getattr(self, f"_{kind}")():
                    self.faults[kind] += 1
            except Exception as exc:
                self._note(f"fault {kind} failed to inject: {type(exc).__name__}: {exc}")
            next_at = time.monotonic() + self.rng.expovariate(1 / self.interval)

    def _later(self, delay_s: float, what: str, fn: Callable[[], None]) -> None:
        self._restores.append((time.monotonic() + delay_s, what, fn))

    def _run_restore(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            self._note(f"restoring {what} failed: {type(exc).__name__}: {exc}")

    # -- processes

    def _kill(self, name: str, delay_s: float) -> bool:
        if name in self._down:
            return False
        svc = self.grid.by_name[name]
        svc.kill()  # SIGKILL
        self._down.add(name)
        self._note(f"SIGKILL {name}; restart in {delay_s:.0f} s")

        def restart() -> None:
            self._down.discard(name)
            svc.start()

        self._later(delay_s, f"{name} restart", restart)
        return True

    def _oracle_kill(self) -> bool:
        return self._kill("oracle", self.rng.uniform(0.5, 6))

    def _agent_kill(self) -> bool:
        name = self.rng.choice(sorted(self.grid.providers))
        self._agent_kills += 1
        # Every third kill (the second, fifth, ...) outlives the heartbeat timeout, so that even
        # a short run sees the oracle fail a silent provider's jobs.
        if self._agent_kills % 3 == 2:
            # Past the heartbeat timeout: the oracle must fail the agent's RUNNING jobs.
            delay = self.opts.heartbeat_timeout_s + 5 + self.rng.uniform(3, 10)
            self.faults["agent_kill_past_heartbeat"] += 1
        else:
            delay = self.rng.uniform(0.5, 5)
        return self._kill(name, delay)

    # -- the RPC

    def _rpc_cut(self) -> bool:
        proxy = self.grid.proxy
        if proxy is None or proxy.is_cut:
            return False
        proxy.cut()
        delay = self.rng.uniform(2, 8)
        self._note(f"RPC cut for {delay:.1f} s")
        self._later(delay, "RPC", proxy.restore)
        return True

    def _reorg(self) -> bool:
        depth = self.rng.randint(1, MAX_REORG_DEPTH)
        drop_services = self.rng.random() < 0.3
        w3 = connect(self.grid.anvil.url)
        customers = {dev_account(i).address.lower() for i in CUSTOMERS}
        # Interval mining paused: the blocks we read are the blocks anvil_reorg replaces.
        _rpc(w3, "evm_setIntervalMining", [0])
        try:
            head = int(w3.eth.block_number)
            if head - depth <= self.grid.deployment.block + 2:
                return False
            txs: list[tuple[str, str, int]] = []  # raw, sender, offset in the new branch
            for offset, n in enumerate(range(head - depth + 1, head + 1)):
                block = w3.eth.get_block(n, full_transactions=True)
                for tx in block["transactions"]:
                    assert not isinstance(tx, bytes)  # full_transactions=True gives dicts
                    raw = _rpc(w3, "eth_getRawTransactionByHash", [Web3.to_hex(tx["hash"])])
                    txs.append((str(raw), str(tx["from"]).lower(), offset))
            dropped: set[str] = set()
            if drop_services:
                # Forget every transaction of one service in these blocks (a service, not a
                # customer, so job ids stay the same): it must notice and send again.
                senders = sorted({s for _, s, _ in txs if s not in customers})
                if senders:
                    dropped.add(self.rng.choice(senders))
            replay: list[list[Any]] = []
            last = 0
            for raw, sender, offset in txs:
                if sender in dropped:
                    continue
                # Some transactions land a block later than before; order is kept.
                off = min(depth - 1, max(last, offset + (self.rng.random() < 0.3)))
                last = off
                replay.append([raw, off])
            _rpc(w3, "anvil_reorg", [depth, replay])
        finally:
            _rpc(w3, "evm_setIntervalMining", [1])
        self._note(
            f"reorg depth {depth} at block {head}: {len(replay)} of {len(txs)} txs replayed"
            + (f", dropped all of {sorted(dropped)}" if dropped else "")
        )
        if dropped:
            self.faults["reorg_dropping_txs"] += 1
        return True

    # -- bad input

    def _api_garbage(self) -> bool:
        market = self.grid.deployment.market
        provider = dev_account(self.rng.choice(sorted(self.grid.providers.values())))
        stranger = Account.create()
        hb = Heartbeat(provider.address, market, 31337, 1, int(time.time()), 1, 0, 100)
        # A provider's name over someone else's signature.
        forged = sign(
            Heartbeat(stranger.address, market, 31337, 10**9, int(time.time()), 1, 0, 1), stranger
        )
        forged["heartbeat"]["provider"] = provider.address
        replayed = sign(hb, provider)  # seq 1: long since used by the real agent
        unknown = sign(
            Heartbeat(stranger.address, market, 31337, 1, int(time.time()), 1, 0, 1), stranger
        )
        wrong_types = sign(hb, provider)
        wrong_types["heartbeat"]["seq"] = "1"
        wrong_types["heartbeat"]["running"] = "all of them"
        huge = {"heartbeat": {**hb.__dict__, "running": list(range(200_000))}, "signature": "0x"}
        posts: list[tuple[str, Any]] = [
            ("{not json", None),
            ("[]", None),
            ("null", None),
            ("1e999999", None),
            ('{"heartbeat": 1, "signature": 2}', None),
            ("", forged),
            ("", replayed),
            ("", unknown),
            ("", wrong_types),
            ("", huge),
            ("", {**sign(hb, provider), "extra": True}),
            ("", {"heartbeat": {**hb.__dict__, "seq": 2**300}, "signature": "0x" + "ab" * 65}),
        ]
        gets = [
            "/api/jobs/" + "9" * 80,
            "/api/jobs/-1",
            "/api/jobs/abc",
            "/api/jobs/1.5",
            "/api/jobs/%00",
            "/api/jobs?limit=abc",
            "/api/jobs?limit=100000000000000000000000",
            "/api/jobs?status=NOPE",
            "/api/jobs?customer=0xzz",
            "/api/jobs?offset=1e400",
            "/api/jobs?cursor=" + "9" * 400,
            "/api/providers?x=" + "y" * 5000,
            "/api/jobs/" + str(2**63),
        ]
        n = 0
        for text, body in self.rng.sample(posts, 5):
            if body is None:
                r = self._request("POST", "/api/heartbeats", content=text.encode(), json_ct=True)
            else:
                r = self._request("POST", "/api/heartbeats", json_body=body)
            n += r is not None
        for path in self.rng.sample(gets, 5):
            n += self._request("GET", path) is not None
        n += self._request("DELETE", "/api/jobs/1") is not None
        return n > 0

    def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        json_ct: bool = False,
    ) -> httpx.Response | None:
        headers = {"content-type": "application/json"} if json_ct else None
        try:
            r = self.http.request(method, path, content=content, json=json_body, headers=headers)
        except httpx.HTTPError as exc:
            self._note(f"API {method} {path[:60]}: no answer ({type(exc).__name__})")
            return None
        if r.status_code >= 500:
            self.api_5xx.append(f"{method} {path[:80]} -> {r.status_code}: {r.text[:200]}")
        elif r.status_code < 400 and method != "GET":
            # A forged, replayed or malformed heartbeat accepted (GETs may ignore junk).
            self.api_accepted.append(f"{method} {path[:80]} -> {r.status_code}: {r.text[:200]}")
        return r

    BROKEN_SPECS = (
        "name: [unclosed\nscript: echo",
        "- a\n- b\n",
        "name: x\n",
        "name: x\nscript: echo\nresources: {tasks: many}\n",
        "name: x\nscript: echo\nresources: {tasks: 1, cpus_per_task: -4}\n",
        "name: x\nscript: echo\ntime_limit_minutes: 1e400\n",
        "name: x\nscript: echo\nresources: {tasks: 99999999999999999999999999}\n",
        "\x00\x01\x02binary\xff",
        "name: &a [*a]\nscript: echo\n",
        "name: x\nscript: echo\nunknown_field: 1\n",
        '{"name": "x", "script": "echo", "resources": "lots"}',
    )

    def _cli_garbage(self) -> bool:
        spec = self.rng.choice(self.BROKEN_SPECS)
        cli = Path(sys.executable).with_name("metascheduler")
        acct = dev_account(CLI_WALLET)
        w3 = connect(self.grid.anvil.url)
        before = int(w3.eth.get_transaction_count(acct.address, "pending"))
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(spec)
        try:
            proc = subprocess.run(
                [
                    str(cli),
                    "--rpc-url",
                    self.grid.anvil.url,
                    "--market",
                    self.grid.deployment.market,
                    "--key-env",
                    "SOAK_CLI_KEY",
                    "--from-block",
                    str(self.grid.deployment.block),
                    "job",
                    "submit",
                    f.name,
                    "--escrow",
                    "1",
                    "--max-price",
                    "0.01",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env={
                    **os.environ,
                    "SOAK_CLI_KEY": "0x" + bytes(acct.key).hex(),
                },
            )
        finally:
            Path(f.name).unlink(missing_ok=True)
        after = int(w3.eth.get_transaction_count(acct.address, "pending"))
        if proc.returncode != 2 or after != before:
            self.cli_wrong.append(
                f"spec {spec[:40]!r}: exit {proc.returncode} (want 2), nonce {before}->{after}; "
                f"stderr: {proc.stderr.strip()[-300:]}"
            )
        return True


# ---------------------------------------------------------------------- the verdict


@dataclass
class Verdict:
    jobs: int = 0
    submitted: dict[str, int] = field(default_factory=dict)
    by_state: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    lost_ids: list[int] = field(default_factory=list)
    doubled: int = 0
    doubled_ids: list[int] = field(default_factory=list)
    credit_drift: int = 0
    audit_ok: bool = False
    audit_discrepancies: int = 0
    api_5xx: int = 0
    #: malformed or forged POSTs the API accepted
    api_accepted_bad: int = 0
    #: ERROR lines in the API's own log (e.g. 503s to agents' heartbeats); informative only
    api_log_errors: int = 0
    cli_wrong: int = 0
    customer_errors: dict[str, int] = field(default_factory=dict)
    minutes: float = 0
    seed: int = 0
    slurm: bool = False
    head_block: int = 0

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.doubled == 0
            and self.credit_drift == 0
            and self.audit_ok
            and self.api_5xx == 0
            and self.api_accepted_bad == 0
            and self.cli_wrong == 0
        )


def job_states(market: Market, count: int) -> dict[int, JobStatus]:
    """Every job's status, in JSON-RPC batches (one round trip per 200 jobs)."""
    fns = market.contract.functions
    out: dict[int, JobStatus] = {}
    ids = list(range(1, count + 1))
    for i in range(0, len(ids), 200):
        part = ids[i : i + 200]
        with market.w3.batch_requests() as batch:
            for j in part:
                batch.add(fns.getJob(j))
            raw: list[Any] = list(batch.execute())
        for j, v in zip(part, raw, strict=True):
            out[j] = JobStatus(v[2])
    return out


def backend_runs(grid: SoakGrid) -> tuple[dict[int, list[str]], list[str]]:
    """Chain job id -> where it started running on a backend (one entry per start)."""
    runs: dict[int, list[str]] = defaultdict(list)
    notes: list[str] = []
    for name, work in grid.agents.items():
        path = work / "state.json"
        if not path.exists():
            continue
        for native, rec in json.loads(path.read_text()).get("jobs", {}).items():
            if rec.get("started_at") is not None:
                runs[int(rec["job_id"])].append(f"{name}:{native}")
    if grid.slurm_conf and grid.slurm_agent:
        env = {**os.environ, "SLURM_CONF": str(grid.slurm_conf)}
        seen: dict[str, int] = {}
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(grid.started_at - 60))
        args = ["sacct", "-c", "--parsable2", "--noheader", f"--format={SACCT_FIELDS}"]
        args.append(f"--starttime={since}")
        p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
        if p.returncode == 0:
            for row in parse_sacct(p.stdout):
                jid = parse_job_name(row.name, grid.name_prefix)
                if jid is not None and row.start is not None:
                    seen[row.native_id] = jid
        else:
            notes.append(f"sacct -c failed: {p.stderr.strip()}")
        q = subprocess.run(
            ["squeue", "--noheader", "--states=all", "--format=%i|%j|%T"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        for line in q.stdout.splitlines():
            native, name, state = [*line.split("|"), "", "", ""][:3]
            jid = parse_job_name(name.strip(), grid.name_prefix)
            if jid is not None and state.strip() not in ("PENDING", "CANCELLED"):
                seen.setdefault(native.strip(), jid)
        for native, jid in seen.items():
            runs[jid].append(f"{grid.slurm_agent}:{native}")
    return runs, notes


def chain_doubles(events: Iterable[ChainEvent]) -> dict[int, str]:
    """Jobs with a transition that succeeded twice: a second JobPlaced with no JobReturned in
    between, a second accept or start in one placement, or more than one JobEnded."""
    bad: dict[int, str] = {}
    placed: dict[int, bool] = defaultdict(bool)
    steps: dict[int, set[int]] = defaultdict(set)
    ended: Counter[int] = Counter()
    for ev in events:
        if "jobId" not in ev.args:
            continue
        j = int(ev.args["jobId"])
        if ev.name == "JobPlaced":
            if placed[j]:
                bad[j] = f"placed again in block {ev.block_number} without being returned"
            placed[j] = True
            steps[j].clear()
        elif ev.name == "JobReturned":
            placed[j] = False
            steps[j].clear()
        elif ev.name == "JobStatusChanged":
            to = int(ev.args["to"])
            if to in steps[j]:
                bad[j] = f"moved to {JobStatus(to).name} twice (block {ev.block_number})"
            steps[j].add(to)
        elif ev.name == "JobEnded":
            ended[j] += 1
            if ended[j] > 1:
                bad[j] = f"ended twice (again in block {ev.block_number})"
    return bad


def judge(grid: SoakGrid, inj: Injector, work: Workload, opts: SoakOptions) -> Verdict:
    from metascheduler.audit import audit_all
    from metascheduler.audit.logs import LogReader

    v = Verdict(minutes=opts.minutes, seed=opts.seed, slurm=grid.slurm_conf is not None)
    m = Market(connect(grid.anvil.url), grid.deployment.market)
    w3 = m.w3
    head = int(w3.eth.block_number)
    v.head_block = head
    fns = m.contract.functions
    count = int(fns.jobCount().call(block_identifier=head))
    states = job_states(m, count)
    v.jobs = count
    v.submitted = dict(work.submitted)
    v.by_state = dict(Counter(s.name for s in states.values()))
    v.faults = dict(inj.faults)
    v.lost_ids = sorted(j for j, s in states.items() if not s.terminal)
    v.lost = len(v.lost_ids)

    reader = LogReader(w3, m.address, m.events)
    events = reader.fetch(grid.deployment.block, head)
    doubles = chain_doubles(events)
    runs, notes = backend_runs(grid)
    for j, where in runs.items():
        if len(where) > 1:
            doubles.setdefault(j, f"ran {len(where)} times: {', '.join(where)}")
    v.doubled_ids = sorted(doubles)
    v.doubled = len(doubles)

    # Credit conservation at one block: token held == balances + live escrows + fees.
    accounts = {dev_account(i).address for i in range(20)}
    for ev in events:
        for key in ("account", "provider", "customer"):
            if key in ev.args:
                accounts.add(Web3.to_checksum_address(ev.args[key]))
    balances = sum(int(fns.balanceOf(a).call(block_identifier=head)) for a in accounts)
    live = 0
    for j in range(1, count + 1):
        view = fns.getJob(j).call(block_identifier=head)
        if not JobStatus(view[2]).terminal:
            live += int(view[5])
    fees = int(fns.accruedFees().call(block_identifier=head))
    held = int(m.credit.functions.balanceOf(m.address).call(block_identifier=head))
    v.credit_drift = held - balances - live - fees

    grid_audit = audit_all(m, from_block=grid.deployment.block)
    found = grid_audit.all_discrepancies
    v.audit_ok = bool(grid_audit.ok)
    v.audit_discrepancies = len(found)
    v.api_5xx = len(inj.api_5xx)
    v.api_accepted_bad = len(inj.api_accepted)
    api_log = grid.root / "logs" / "api.log"
    if api_log.exists():
        errors = [ln for ln in api_log.read_text(errors="replace").splitlines() if " ERROR " in ln]
        v.api_log_errors = len(errors)
        for ln in errors[:5]:
            say(f"API log: {ln[:300]}")
    v.cli_wrong = len(inj.cli_wrong)
    v.customer_errors = dict(work.errors)

    # The human part: what went wrong, with job ids and blocks.
    say(f"head block {head}; {count} jobs: {v.by_state}")
    for j in v.lost_ids:
        say(f"LOST job {j}: still {states[j].name} after the drain")
    for j in v.doubled_ids:
        say(f"DOUBLED job {j}: {doubles[j]}")
    if v.credit_drift:
        say(
            f"CREDIT DRIFT at block {head}: token held {held} - balances {balances} - live "
            f"escrows {live} - fees {fees} = {v.credit_drift}"
        )
    for d in found[:40]:
        say(f"AUDIT job {d.job_id} block {d.block}: [{d.check}] {d.message}")
    for line in inj.api_5xx[:20]:
        say(f"API 5xx: {line}")
    for line in inj.api_accepted[:20]:
        say(f"API accepted bad input: {line}")
    for line in inj.cli_wrong[:20]:
        say(f"CLI: {line}")
    for line in notes:
        say(line)
    return v


# ---------------------------------------------------------------------- the run


def _progress(grid: SoakGrid, work: Workload, inj: Injector, started: float, phase: str) -> None:
    try:
        m = Market(connect(grid.anvil.url), grid.deployment.market)
        count = m.job_count()
        states = job_states(m, count)
        terminal = sum(1 for s in states.values() if s.terminal)
    except Exception as exc:
        say(f"progress: chain unreadable ({type(exc).__name__})")
        return
    down = [s.name for s in grid.services if not s.alive]
    cut = " RPC CUT" if grid.proxy and grid.proxy.is_cut else ""
    say(
        f"{phase} {time.monotonic() - started:5.0f} s: jobs submitted "
        f"{sum(work.submitted.values())}, on chain {count}, terminal {terminal}; "
        f"faults {sum(inj.faults.values())} {dict(inj.faults)}"
        + (f"; down {down}" if down else "")
        + cut
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_soak(opts: SoakOptions) -> int:
    # SIGTERM unwinds like Ctrl-C, so the grid's processes (in their own sessions) are stopped.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    rng = random.Random(opts.seed)
    grid = SoakGrid(opts, rng)
    verdict: Verdict | None = None
    try:
        grid.up()
        work = Workload(grid, opts, opts.seed)
        inj = Injector(grid, opts, random.Random(rng.getrandbits(64)))
        started = time.monotonic()
        end = started + opts.minutes * 60
        say(f"soak for {opts.minutes:g} min (seed {opts.seed}); faults every ~{inj.interval:.0f} s")
        work.start()
        inj.start()
        while time.monotonic() < end:
            time.sleep(min(opts.progress_s, max(0.1, end - time.monotonic())))
            _progress(grid, work, inj, started, "load ")
        say("stopping the load and the faults; bringing everything back")
        inj.finish()
        work.join()
        for svc in grid.services:
            if not svc.alive:
                code = svc.process.returncode if svc.process else None
                say(f"{svc.name} is down after the faults (exit {code}): restarting it")
                svc.start()
        drain_end = time.monotonic() + opts.drain_timeout_s
        m = Market(connect(grid.anvil.url), grid.deployment.market)
        while time.monotonic() < drain_end:
            states = job_states(m, m.job_count())
            if all(s.terminal for s in states.values()):
                break
            time.sleep(opts.progress_s)
            _progress(grid, work, inj, started, "drain")
        for n in inj.notes:
            say(f"fault: {n}")
        for e in work.error_samples:
            say(f"customer error: {e}")
        say(f"customer actions: {dict(work.actions)}")
        verdict = judge(grid, inj, work, opts)
    except Exception:
        traceback.print_exc()
        say("the soak itself failed before its verdict")
    finally:
        crashed = [s.name for s in grid.services if s.process and not s.alive]
        if crashed:
            say(f"services not running at the end: {crashed}; logs in {grid.root / 'logs'}")
        # A second Ctrl-C must not leave the grid running: ignore it while stopping.
        main = threading.current_thread() is threading.main_thread()
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            grid.down()
        finally:
            if main:
                signal.signal(signal.SIGINT, old_int)
    if verdict is None:
        print(json.dumps({"ok": False, "error": "the soak failed before its verdict"}))
        return 3
    out = {"ok": verdict.ok, **verdict.__dict__}
    say("verdict: " + ("all promises kept" if verdict.ok else "PROMISES BROKEN (see above)"))
    print(json.dumps(out, sort_keys=False), flush=True)
    return 0 if verdict.ok else 1
