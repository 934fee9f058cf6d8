#!/usr/bin/env python3
"""The whole grid at speed: customers, the oracle and provider agents all running at once.

Starts a fresh anvil (1-second blocks, its default 30M gas limit), deploys, starts the oracle
and `--agents` provider agents on the local executor (each declaring `--cpus` CPUs, enough for
the load), funds `--wallets` customer wallets, and then submits short jobs (half a no-op, half a
1-second sleep; 1 CPU each) at a steady rate for `--step-s` seconds per step, raising the rate
step by step (`--rates`) until the grid falls behind. A step kept up when every job it submitted
reached FINISHED within `--grace-s` seconds of the step's end, the jobs submitted last did not
wait longer than the first (request to end, p50 of the last fifth at most 2 blocks above the
first fifth's), and the customers' requests went out at 90% of the rate at least (on a busy
machine the sender itself slows down: a step it could not feed measured a lower rate). The steps
stop at the first that fell behind, once the 50 jobs/s step has run.

The customers are the harness, not the grid: in reality each signs on its own machine. So a
step's requests are signed before its clock starts, and a child process sends them raw at the
rate; the harness's own CPU while the grid runs (this process reading the step's events as blocks
come, and the sender) is measured apart, as bench_cpu_ms_per_job and sender_cpu_ms_per_job.

Measured from the chain (the blocks of each job's events) and from /proc (the CPU time of each
process). The last line is one JSON object:
  jobs_completed_per_s     completed lifecycles (request to FINISHED) per second in the fastest
                           step the grid kept up with
  chain_bound_jobs_per_s   the block gas limit over the gas of one lifecycle measured in that step
                           (every transaction of its blocks: requests, placements, provider
                           batches), and grid_over_bound, the ratio
  request_to_running_blocks_p50/_p99, request_to_end_blocks_p50   at 50 jobs/s
  kept_up_request_to_running_blocks_p50/_p99   the same at the fastest step kept up
  oracle_cpu_ms_per_job, agent_cpu_ms_per_job   process CPU time over the jobs of the step at
                           50 jobs/s (agents summed; their job supervisors apart, as
                           runner_cpu_ms_per_job), and anvil_cpu_ms_per_job
  bench_cpu_ms_per_job, sender_cpu_ms_per_job   the harness's own, on the same cores
  bottleneck               in words, from the stage that slowed down and the CPU figures of the
                           first step that fell behind
`--profile` runs the oracle and the agents under cProfile (on their CPU clock) and prints where
the oracle and the busiest agent spent their CPU, and per step the busiest processes of the
machine (from /proc). `--quick` is a short run (rates 10, 50; 15-second steps). A
full run stays under 10 minutes.
Usage: .venv/bin/python scripts/bench_grid.py [--quick] [--profile] [--rates 10,25,50,...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

from metascheduler.chain import JobStatus, Market
from metascheduler.chain.rawlogs import get_logs
from metascheduler.chain.rpc import connect, raw_call
from metascheduler.devnet.anvil import dev_account, start_anvil
from metascheduler.devnet.demo import Devnet
from metascheduler.devnet.procs import Service
from metascheduler.devnet.wallets import Request, Wallets, send_steady
from metascheduler.spec import encode_spec, parse_spec

CREDIT = 10**6
GWEI = 10**9
ADMIN, ORACLE, FIRST_PROVIDER = 0, 1, 2
PRICE_CPU = 1_000  # units per CPU-minute
MAX_PRICE = 10_000
ESCROW = 10_000  # 10 minutes of one CPU: far more than a job uses
REQUEST_GAS = 400_000  # the limit each request carries; what it uses is measured
FULL_RATES = "5,10,25,50,75,100,150,200,300"
QUICK_RATES = "10,50"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def job_spec(i: int) -> bytes:
    script = "true" if i % 2 == 0 else "sleep 1"
    text = json.dumps(
        {
            "name": f"grid-{i}",
            "script": script,
            "resources": {"tasks": 1, "cpus_per_task": 1, "mem_per_cpu_mb": 64},
            "time_limit_minutes": 2,
        }
    )
    return encode_spec(parse_spec(text))


class BenchGrid(Devnet):
    """anvil, the oracle and the agents as child processes, each with its own log."""

    def __init__(self, root: Path, agents: int, cpus: int, profile: bool) -> None:
        super().__init__(root, api_port=0, profile=profile)
        self.n_agents = agents
        self.cpus = cpus
        self.providers = [FIRST_PROVIDER + n for n in range(agents)]
        self.log_level = "WARNING"

    def up(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "logs").mkdir(parents=True)
        self.anvil = start_anvil(
            block_time=1, accounts=FIRST_PROVIDER + self.n_agents, log_path=None
        )
        w3 = connect(self.anvil.url)
        dep = Market.deploy(w3, dev_account(ADMIN), oracle=dev_account(ORACLE).address)
        self.deployment = dep
        self.admin = self.market(ADMIN)
        base = {"rpc_url": self.anvil.url, "market_address": dep.market, "confirmations": 0}
        oracle_cfg = {
            **base,
            "database_url": f"sqlite:///{self.root / 'oracle.db'}",
            "start_block": dep.block,
            "log_level": self.log_level,
        }
        self._service("oracle", "metascheduler.oracle", oracle_cfg, ORACLE)
        for n, key in enumerate(self.providers):
            name = f"agent-{n + 1}"
            cfg = {
                **base,
                "start_block": dep.block,
                "backend": "local",
                "state_dir": str(self.root / name),
                "poll_interval_s": 1.0,
                "prices": {"cpu": PRICE_CPU, "gpu": 0, "gb": 0},
                "log_level": self.log_level,
                "local": {"workdir": str(self.root / name / "work"), "cpus": self.cpus},
                "hardware": {"nodes": 1, "cpus": self.cpus, "mem_mb": self.cpus * 1024},
            }
            self._service(name, "metascheduler.agent", cfg, key)
        self._approve_providers({dev_account(k).address for k in self.providers}, 120.0)

    def pid(self, name: str) -> int:
        svc = self.by_name[name]
        assert svc.process is not None
        return svc.process.pid

    @property
    def by_name(self) -> dict[str, Service]:
        return {s.name: s for s in self.services}


def request(i: int) -> Request:
    """The i-th job the benchmark requests: one CPU, half of them a no-op."""
    return Request(job_spec(i), 1, 0, 64, max_price_per_minute=MAX_PRICE, escrow=ESCROW)


def cpu_s(pid: int) -> tuple[float, float]:
    """(own, waited-for children's) CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])
    children = int(fields[13]) + int(fields[14])
    return own / CLOCK_TICKS, children / CLOCK_TICKS


def runner_cpu_s(agent_pid: int) -> float:
    """CPU seconds of an agent's child processes: its job supervisors' zygote (own, and its
    supervisors' once reaped: every job's sandbox and job), and whatever it reaped itself."""
    total = cpu_s(agent_pid)[1]
    for _, ppid, own, children in processes().values():
        if ppid == agent_pid:
            total += own + children
    return total


def processes() -> dict[int, tuple[str, int, float, float]]:
    """Every live process: (name, parent pid, own CPU s, waited-for children's CPU s)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        name = text[text.index("(") + 1 : text.rindex(")")]
        with contextlib.suppress(OSError):
            # "python -m metascheduler.agent --config agent-1.toml" says more than "python".
            args = (stat.parent / "cmdline").read_bytes().split(b"\0")
            name = " ".join(Path(a.decode(errors="replace")).name for a in args if a)[-56:]
        fields = text.rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        children = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
        out[int(stat.parent.name)] = (name, int(fields[1]), own, children)
    return out


def busiest_processes(
    before: dict[int, tuple[str, int, float, float]], seconds: float, top: int = 12
) -> str:
    """The processes that used the most CPU since ``before``, as a table in cores (a process
    started meanwhile counts from zero; one that ended shows in its parent's reaped column)."""
    rows = []
    for pid, (name, _, own, children) in processes().items():
        _, _, own0, children0 = before.get(pid, (name, 0, 0.0, 0.0))
        rows.append((own - own0, children - children0, pid, name))
    rows.sort(reverse=True)
    lines = [f"#   {'pid':>7} {'own':>6} {'reaped':>7}  (cores)  process"]
    for own, children, pid, name in rows[:top]:
        lines.append(f"#   {pid:>7} {own / seconds:6.2f} {children / seconds:7.2f}  {name}")
    return "\n".join(lines)


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


@dataclass
class Timeline:
    requested: int = -1
    placed: int = -1
    accepted: int = -1
    running: int = -1
    ended: int = -1
    status: int = -1


@dataclass
class Step:
    rate: float
    jobs: dict[int, Timeline] = field(default_factory=dict)
    seconds: float = 0.0
    first_block: int = 0
    last_block: int = 0
    gas_used: int = 0
    gas_limit: int = 0
    blocks: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)
    machine_busy: float = 0.0
    wall_s: float = 0.0
    sent: int = 0

    @property
    def sent_per_s(self) -> float:
        """The rate the requests went out at (below ``rate`` when the sender fell behind)."""
        return self.sent / max(1e-9, self.seconds)

    @property
    def finished(self) -> list[Timeline]:
        return [t for t in self.jobs.values() if t.status == JobStatus.FINISHED]

    def stage(self, frm: str, to: str, part: slice = slice(None)) -> list[int]:
        ordered = [self.jobs[j] for j in sorted(self.jobs)][part]
        return [
            getattr(t, to) - getattr(t, frm)
            for t in ordered
            if getattr(t, to) >= 0 and getattr(t, frm) >= 0
        ]

    @property
    def kept_up(self) -> bool:
        if not self.jobs or len(self.finished) < len(self.jobs):
            return False
        if self.sent_per_s < 0.9 * self.rate:
            return False
        fifth = max(1, len(self.jobs) // 5)
        first = self.stage("requested", "ended", slice(0, fifth))
        last = self.stage("requested", "ended", slice(-fifth, None))
        return statistics.median(last) - statistics.median(first) <= 2

    @property
    def gas_per_job(self) -> float:
        return self.gas_used / max(1, len(self.finished))


def percentile(xs: list[int], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return float(s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))])


def read_timelines(market: Market, start: int, end: int, jobs: dict[int, Timeline]) -> None:
    """Fills each job's blocks from the market's events in [start, end]; new jobs join. Logs
    read raw (`chain.rawlogs`): this runs on the grid's cores, every second of a step."""
    topics = [
        market.events.topic(name)
        for name in ("JobRequested", "JobPlaced", "JobStatusChanged", "JobEnded")
    ]
    for lo in range(start, end + 1, 500):
        logs = get_logs(market.w3, market.address, lo, min(end, lo + 499), [topics])
        for lg in logs:
            ev = market.events.decode(lg)
            if ev is None:
                continue
            job_id = int(ev.args["jobId"])
            if ev.name == "JobRequested":
                jobs[job_id] = Timeline(requested=ev.block_number)
            t = jobs.get(job_id)
            if t is None:
                continue
            if ev.name == "JobPlaced":
                t.placed = ev.block_number
            elif ev.name == "JobStatusChanged":
                if ev.args["to"] == JobStatus.SCHEDULED:
                    t.accepted = ev.block_number
                elif ev.args["to"] == JobStatus.RUNNING:
                    t.running = ev.block_number
            elif ev.name == "JobEnded":
                t.ended, t.status = ev.block_number, int(ev.args["to"])


def run_step(
    grid: BenchGrid, market: Market, wallets: Wallets, rate: float, step_s: float, grace_s: float
) -> Step:
    w3 = market.w3
    n = max(1, round(rate * step_s))
    raws = wallets.requests(n, request, REQUEST_GAS)  # signed before the clock starts
    names = ["oracle", *(f"agent-{k + 1}" for k in range(grid.n_agents))]
    before = {name: cpu_s(grid.pid(name)) for name in names}
    runners_before = {name: runner_cpu_s(grid.pid(name)) for name in names[1:]}
    procs_before = processes()
    anvil_before = cpu_s(grid.anvil.process.pid)[0]
    machine_before = machine_busy_s()
    bench_before = cpu_s(os.getpid())
    step = Step(rate, first_block=w3.eth.block_number + 1, sent=n)
    t0 = time.monotonic()
    child = mp.get_context("fork").Process(target=send_steady, args=(grid.anvil.url, raws, rate))
    child.start()
    # The step's events are read as they come (each block once), while the customers send.
    read_to = step.first_block - 1
    deadline = float("inf")
    while True:
        if step.seconds:
            time.sleep(1.0)
        elif wait_for([child.sentinel], timeout=1.0):  # woken the moment the sender ends
            child.join()
            step.seconds = time.monotonic() - t0
            deadline = time.monotonic() + grace_s
        head = int(raw_call(w3, "eth_blockNumber", []), 16)
        read_timelines(market, read_to + 1, head, step.jobs)
        read_to = head
        done = len(step.jobs) >= n and all(t.ended >= 0 for t in step.jobs.values())
        if (done and step.seconds) or time.monotonic() > deadline:
            break
    step.wall_s = time.monotonic() - t0
    bench_after = cpu_s(os.getpid())
    step.last_block = max((t.ended for t in step.jobs.values() if t.ended >= 0), default=head)
    for number in range(step.first_block, step.last_block + 1):
        block = raw_call(w3, "eth_getBlockByNumber", [hex(number), False])
        step.gas_used += int(block["gasUsed"], 16)
        step.gas_limit = int(block["gasLimit"], 16)
        step.blocks += 1
    after = {name: cpu_s(grid.pid(name)) for name in names}
    jobs = max(1, len(step.jobs))
    step.cpu_ms = {
        "oracle": (after["oracle"][0] - before["oracle"][0]) * 1000 / jobs,
        "agent": sum(after[a][0] - before[a][0] for a in names[1:]) * 1000 / jobs,
        "runner": sum(runner_cpu_s(grid.pid(a)) - runners_before[a] for a in names[1:])
        * 1000
        / jobs,
        "anvil": (cpu_s(grid.anvil.process.pid)[0] - anvil_before) * 1000 / jobs,
        # The harness on the same cores: this process reading the step's events, and the
        # customers' sender (the child it waited for).
        "bench": (bench_after[0] - bench_before[0]) * 1000 / jobs,
        "sender": (bench_after[1] - bench_before[1]) * 1000 / jobs,
    }
    busy, total = machine_busy_s()
    step.machine_busy = (busy - machine_before[0]) / max(1e-9, total - machine_before[1])
    if grid.profile:
        print(f"# {rate:g} jobs/s, CPU by process:", file=sys.stderr)
        print(busiest_processes(procs_before, step.wall_s), file=sys.stderr)
    return step


def describe(step: Step) -> str:
    stages = (
        ("requested", "placed", "placement (oracle)"),
        ("placed", "accepted", "ACCEPT (agents)"),
        ("accepted", "running", "START (agents and their backends)"),
        ("running", "ended", "COMPLETE (agents and their backends)"),
    )
    fifth = max(1, len(step.jobs) // 5)
    growth = []
    for frm, to, what in stages:
        first = step.stage(frm, to, slice(0, fifth))
        last = step.stage(frm, to, slice(-fifth, None))
        if first and last:
            growth.append((statistics.median(last) - statistics.median(first), what))
    unfinished = len(step.jobs) - len(step.finished)
    gas_share = step.gas_used / max(1, step.blocks * step.gas_limit)
    cpu_per_s = {k: v * len(step.jobs) / 1000 / step.wall_s for k, v in step.cpu_ms.items()}
    worst = max(growth) if growth else (0.0, "none")
    return (
        f"at {step.rate:g} jobs/s the {worst[1]} stage fell behind (its median grew by "
        f"{worst[0]:g} blocks from the step's first jobs to its last; {unfinished} of "
        f"{len(step.jobs)} jobs unfinished after the grace; requests sent at "
        f"{step.sent_per_s:.1f}/s); blocks {gas_share:.0%} full of gas; "
        f"CPU in cores: oracle {cpu_per_s['oracle']:.2f}, agents {cpu_per_s['agent']:.2f}, "
        f"job supervisors {cpu_per_s['runner']:.2f}, anvil {cpu_per_s['anvil']:.2f}, the "
        f"benchmark's own {cpu_per_s['bench'] + cpu_per_s['sender']:.2f}; the "
        f"machine's {os.cpu_count()} cores {step.machine_busy:.0%} busy"
    )


def print_profiles(root: Path, busiest_agent: str) -> None:
    for name in ("oracle", busiest_agent):
        path = root / "logs" / f"{name}.prof"
        if not path.exists():
            print(f"# no profile of {name} ({path} missing)", file=sys.stderr)
            continue
        print(f"# profile of {name}: own time, top 15", file=sys.stderr)
        pstats.Stats(str(path), stream=sys.stderr).sort_stats("tottime").print_stats(15)
        print(f"# profile of {name}: cumulative time, top 25", file=sys.stderr)
        pstats.Stats(str(path), stream=sys.stderr).sort_stats("cumulative").print_stats(25)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="rates 10 and 50, 15-second steps")
    ap.add_argument("--rates", help=f"jobs/s per step (default {FULL_RATES})")
    ap.add_argument("--step-s", type=float, help="seconds of submissions per step (default 25)")
    ap.add_argument("--grace-s", type=float, default=20.0, help="wait for a step's jobs to end")
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--cpus", type=int, default=128, help="CPUs each agent declares and runs")
    ap.add_argument("--wallets", type=int, default=100)
    ap.add_argument("--profile", action="store_true", help="the oracle and agents in cProfile")
    ap.add_argument("--keep", action="store_true", help="keep the grid's folder (logs, stores)")
    ap.add_argument("--log-level", default="WARNING", help="of the oracle and the agents")
    args = ap.parse_args()
    rates = [
        float(r) for r in (args.rates or (QUICK_RATES if args.quick else FULL_RATES)).split(",")
    ]
    step_s = args.step_s or (15.0 if args.quick else 25.0)
    root = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    grid = BenchGrid(root, args.agents, args.cpus, args.profile)
    grid.log_level = args.log_level
    steps: list[Step] = []
    busiest = "agent-1"
    try:
        grid.up()
        market = Market(connect(grid.anvil.url), grid.deployment.market)
        wallets = Wallets(market, args.wallets, seed="grid-wallet")
        total = sum(round(r * step_s) for r in rates)
        wallets.fund(grid.admin, total * ESCROW // CREDIT // args.wallets + 10)
        print(f"# grid up in {root}: {args.agents} agents, {args.wallets} wallets", file=sys.stderr)
        for rate in rates:
            step = run_step(grid, market, wallets, rate, step_s, args.grace_s)
            steps.append(step)
            print(
                f"# {rate:g} jobs/s: {len(step.finished)}/{len(step.jobs)} finished, "
                f"request->running p50 {percentile(step.stage('requested', 'running'), 50)} "
                f"p99 {percentile(step.stage('requested', 'running'), 99)} blocks, "
                f"request->end p50 {percentile(step.stage('requested', 'ended'), 50)}; "
                f"stage p50s: placed {percentile(step.stage('requested', 'placed'), 50)}, "
                f"accepted {percentile(step.stage('placed', 'accepted'), 50)}, "
                f"running {percentile(step.stage('accepted', 'running'), 50)}, "
                f"ended {percentile(step.stage('running', 'ended'), 50)}; "
                f"{step.gas_per_job:,.0f} gas/job; CPU ms/job "
                + ", ".join(f"{k} {v:.1f}" for k, v in step.cpu_ms.items())
                + f"; machine {step.machine_busy:.0%} busy; sent {step.sent_per_s:.1f}/s; "
                + ("kept up" if step.kept_up else "fell behind"),
                file=sys.stderr,
            )
            grid._check_services()
            agents = [f"agent-{k + 1}" for k in range(args.agents)]
            busiest = max(agents, key=lambda a: cpu_s(grid.pid(a))[0])
            if not step.kept_up and rate >= 50:
                break
    finally:
        grid.down()
        if args.profile:
            print_profiles(root, busiest)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    kept = [s for s in steps if s.kept_up]
    best = max(kept, key=lambda s: s.rate) if kept else None
    at50 = next((s for s in steps if s.rate == 50), None)
    behind = next((s for s in steps if not s.kept_up), None)
    completed = len(best.finished) / best.seconds if best else 0.0
    bound = best.gas_limit / best.gas_per_job if best else None
    result: dict[str, Any] = {
        "jobs_completed_per_s": round(completed, 1),
        "kept_up_rate": best.rate if best else None,
        "gas_per_job": round(best.gas_per_job) if best else None,
        "chain_bound_jobs_per_s": round(bound, 1) if bound else None,
        "grid_over_bound": round(completed / bound, 3) if bound else None,
        "request_to_running_blocks_p50": None,
        "request_to_running_blocks_p99": None,
        "request_to_end_blocks_p50": None,
        "kept_up_request_to_running_blocks_p50": (
            percentile(best.stage("requested", "running"), 50) if best else None
        ),
        "kept_up_request_to_running_blocks_p99": (
            percentile(best.stage("requested", "running"), 99) if best else None
        ),
        "oracle_cpu_ms_per_job": None,
        "agent_cpu_ms_per_job": None,
        "runner_cpu_ms_per_job": None,
        "anvil_cpu_ms_per_job": None,
        "bench_cpu_ms_per_job": None,
        "sender_cpu_ms_per_job": None,
        "bottleneck": describe(behind) if behind else f"none up to {steps[-1].rate:g} jobs/s",
        "steps": [
            {
                "rate": s.rate,
                "jobs": len(s.jobs),
                "finished": len(s.finished),
                "kept_up": s.kept_up,
                "sent_per_s": round(s.sent_per_s, 1),
                "request_to_running_blocks_p50": percentile(s.stage("requested", "running"), 50),
                "gas_per_job": round(s.gas_per_job),
                "machine_busy": round(s.machine_busy, 3),
                "cpu_ms_per_job": {k: round(v, 2) for k, v in s.cpu_ms.items()},
            }
            for s in steps
        ],
        "agents": args.agents,
        "wallets": args.wallets,
        "step_s": step_s,
    }
    if at50:
        result.update(
            {
                "request_to_running_blocks_p50": percentile(at50.stage("requested", "running"), 50),
                "request_to_running_blocks_p99": percentile(at50.stage("requested", "running"), 99),
                "request_to_end_blocks_p50": percentile(at50.stage("requested", "ended"), 50),
                "oracle_cpu_ms_per_job": round(at50.cpu_ms["oracle"], 2),
                "agent_cpu_ms_per_job": round(at50.cpu_ms["agent"], 2),
                "runner_cpu_ms_per_job": round(at50.cpu_ms["runner"], 2),
                "anvil_cpu_ms_per_job": round(at50.cpu_ms["anvil"], 2),
                "bench_cpu_ms_per_job": round(at50.cpu_ms["bench"], 2),
                "sender_cpu_ms_per_job": round(at50.cpu_ms["sender"], 2),
            }
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
