"""The soak's verdict: what the chain, the backends and the audit say was kept."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from web3.exceptions import Web3RPCError

from metascheduler.agent.backends.base import parse_job_name
from metascheduler.agent.backends.local import read_records
from metascheduler.agent.backends.slurm import SACCT_FIELDS, parse_sacct
from metascheduler.chain import JobStatus, Market
from metascheduler.chain.events import ChainEvent
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import JobView
from metascheduler.devnet.anvil import dev_account
from metascheduler.devnet.soak.common import (
    MAX_REORG_DEPTH,
    SoakOptions,
    say,
)
from metascheduler.devnet.soak.compute import Run, compare
from metascheduler.devnet.soak.faults import Injector
from metascheduler.devnet.soak.grid import SoakGrid
from metascheduler.devnet.soak.readback import read_back
from metascheduler.devnet.soak.workload import Workload, quick_expectation


@dataclass
class Verdict:
    jobs: int = 0
    submitted: dict[str, int] = field(default_factory=dict)
    by_state: dict[str, int] = field(default_factory=dict)
    #: kind -> count; agent_kill_past_heartbeat and reorg_dropping_txs count a subset of the
    #: agent_kill and reorg faults, so `faults_total` is the number of faults injected
    faults: dict[str, int] = field(default_factory=dict)
    faults_total: int = 0
    lost: int = 0
    lost_ids: list[int] = field(default_factory=list)
    doubled: int = 0
    doubled_ids: list[int] = field(default_factory=list)
    #: jobs the banned provider's backend ran whose START the ban then refused: the oracle
    #: reclaimed them (reason "provider banned") and they ran again elsewhere, the first run
    #: unpaid. Not in `doubled`: the ban's rule stops placed jobs, and these were placed.
    rerun_after_ban: int = 0
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
    #: jobs submitted during the load (spam burst excluded) and how many had ended by its end
    load_jobs_submitted: int = 0
    load_s: float = 0
    load_jobs_ended: int = 0
    #: jobs ended per minute of load: what the grid kept up with
    jobs_ended_per_min: float = 0
    spam_jobs: int = 0
    #: seconds from a fast-stream job's request to its end on chain (block times), p50 and p99
    quick_p50_s: float = 0
    quick_p99_s: float = 0
    #: agents, oracle or API found dead without the injector having killed them
    services_crashed: int = 0
    #: credits owed by the rules for delivered compute and not paid (see `compute`)
    provider_underpaid: int = 0
    #: credits billed beyond the compute delivered and the end's documented bounds
    customer_overbilled: int = 0
    #: backend seconds not billed, against the documented bound summed over the jobs
    free_compute_s: float = 0
    free_compute_bound_s: float = 0
    free_compute_max_job_s: float = 0
    free_compute_over_bound: int = 0
    delivered_s: float = 0
    billed_s: float = 0
    #: lines the sampled jobs printed that their customers did not read back (and read twice)
    logs_lost: int = 0
    logs_doubled: int = 0
    #: sampled jobs whose stored outputs do not match the digest on chain or what the job wrote
    outputs_mismatch: int = 0
    results_checked: int = 0
    results_unreadable: int = 0
    #: jobs that ran to their end and completed without a result digest (their COMPLETE waited
    #: no longer for the results, e.g. while the API was down): their outputs are checked
    #: against what the job wrote only
    results_undigested: int = 0
    #: blocks the node lost in an injected reorg (a defect of anvil, not of the grid; every
    #: service reading them fails until it reads past them): informative
    anvil_holes: list[int] = field(default_factory=list)
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
            and self.services_crashed == 0
            and self.provider_underpaid == 0
            and self.customer_overbilled == 0
            and self.free_compute_s <= self.free_compute_bound_s
            and self.logs_lost == 0
            and self.logs_doubled == 0
            and self.outputs_mismatch == 0
        )


def job_views(market: Market, count: int) -> dict[int, JobView]:
    """Every job's record, in JSON-RPC batches (one round trip per 200 jobs)."""
    fns = market.contract.functions
    out: dict[int, JobView] = {}
    ids = list(range(1, count + 1))
    for i in range(0, len(ids), 200):
        part = ids[i : i + 200]
        for attempt in range(3):
            try:
                with market.w3.batch_requests() as batch:
                    for j in part:
                        batch.add(fns.getJob(j))
                    raw: list[Any] = list(batch.execute())
                break
            except Web3RPCError:
                # A reorg under way moved the head between the batch's calls: read again.
                if attempt == 2:
                    raise
                time.sleep(1.0)
        for j, v in zip(part, raw, strict=True):
            out[j] = JobView.from_call(j, v)
    return out


def job_states(market: Market, count: int) -> dict[int, JobStatus]:
    """Every job's status."""
    return {j: v.status for j, v in job_views(market, count).items()}


def backend_runs(grid: SoakGrid) -> tuple[dict[int, list[Run]], list[str]]:
    """Chain job id -> its runs on a backend (one entry per start), from the backends' own
    records: the local executor's files (live and ended jobs) and Slurm's accounting."""
    runs: dict[int, list[Run]] = defaultdict(list)
    notes: list[str] = []
    now = time.time()
    for name, work in grid.agents.items():
        for native, rec in read_records(work).items():
            if rec.get("started_at") is not None:
                end = rec.get("ended_at") or now
                runs[int(rec["job_id"])].append(Run(f"{name}:{native}", rec["started_at"], end))
    if grid.slurm_conf and grid.slurm_agent:
        env = {**os.environ, "SLURM_CONF": str(grid.slurm_conf)}
        seen: dict[str, tuple[int, float, float]] = {}
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(grid.started_at - 60))
        args = ["sacct", "-c", "--parsable2", "--noheader", f"--format={SACCT_FIELDS}"]
        args.append(f"--starttime={since}")
        p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
        if p.returncode == 0:
            for row in parse_sacct(p.stdout):
                jid = parse_job_name(row.name, grid.name_prefix)
                if jid is not None and row.start is not None:
                    seen[row.native_id] = (jid, row.start, row.end or now)
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
                seen.setdefault(native.strip(), (jid, now, now))
        for native, (jid, start, end) in seen.items():
            runs[jid].append(Run(f"{grid.slurm_agent}:{native}", start, end))
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
    v.faults_total = inj.total
    v.lost_ids = sorted(j for j, s in states.items() if not s.terminal)
    v.lost = len(v.lost_ids)

    reader = LogReader(w3, m.address, m.events)
    events = reader.fetch(grid.deployment.block, head)
    doubles = chain_doubles(events)
    runs, notes = backend_runs(grid)
    victim = grid.ban_victim
    victim_addr = dev_account(grid.providers[victim]).address.lower() if victim else ""
    banned_returns = {
        int(ev.args["jobId"])
        for ev in events
        if ev.name == "JobReturned"
        and str(ev.args["provider"]).lower() == victim_addr
        and "banned" in str(ev.args["reason"])
    }
    for j, where in runs.items():
        if len(where) > 1:
            elsewhere = [r for r in where if not r.where.startswith(f"{victim}:")]
            if j in banned_returns and len(elsewhere) == 1 and j not in doubles:
                v.rerun_after_ban += 1
                runs[j] = elsewhere  # the run the chain billed
                continue
            doubles.setdefault(j, f"ran {len(where)} times: {', '.join(r.where for r in where)}")
    v.doubled_ids = sorted(doubles)
    v.doubled = len(doubles)

    # Credit conservation at the audit's head block, from the audit's own reading of it: the
    # token the market holds == balances + escrows of every job not ended (PENDING ones too)
    # + accrued fees (request fees among them) + the unswept surplus of plain transfers.
    grid_audit = audit_all(m, from_block=grid.deployment.block)
    found = grid_audit.all_discrepancies
    owed = grid_audit.balances_total + grid_audit.live_escrow + grid_audit.accrued_fees
    v.credit_drift = grid_audit.token_held - owed - grid_audit.surplus
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
    v.services_crashed = len(inj.crashed)
    v.load_jobs_submitted = sum(work.submitted.values())
    v.load_jobs_ended = work.ended_in_load
    v.load_s = round(work.load_s, 1)
    v.jobs_ended_per_min = round(60 * work.ended_in_load / work.load_s, 1) if work.load_s else 0
    v.spam_jobs = inj.spam_sent
    v.anvil_holes = sorted(inj.anvil_holes)

    audits = {a.job_id: a for a in grid_audit.jobs}
    silent_s = opts.heartbeat_timeout_s + float(grid.oracle_cfg["keep_interval_s"]) + 1.0
    money = compare(audits, runs, inj.downtime, silent_s, float(MAX_REORG_DEPTH))
    for k in (
        "provider_underpaid",
        "customer_overbilled",
        "free_compute_s",
        "free_compute_bound_s",
        "free_compute_max_job_s",
        "free_compute_over_bound",
        "delivered_s",
        "billed_s",
    ):
        setattr(v, k, getattr(money, k))

    expected: dict[int, tuple[list[str], str]] = {}
    for ev in events:
        if ev.name == "JobRequested":
            try:
                name = json.loads(bytes(ev.args["spec"])).get("name")
            except (ValueError, RecursionError, AttributeError):
                continue
            got = quick_expectation(name) if isinstance(name, str) else None
            if got is not None:
                expected[int(ev.args["jobId"])] = (got[1], got[2])
    waits = sorted(
        audits[j].steps[-1].time - audits[j].steps[0].time
        for j in expected
        if j in audits and audits[j].steps and JobStatus[audits[j].status].terminal
    )
    if waits:
        v.quick_p50_s = float(waits[len(waits) // 2])
        v.quick_p99_s = float(waits[min(len(waits) - 1, int(len(waits) * 0.99))])
    wallets = {a.address.lower(): a for a in work.stream.accounts}
    back = read_back(
        grid.anvil.url,
        m.address,
        f"http://127.0.0.1:{grid.api_port}",
        audits,
        expected,
        wallets,
        opts.results_sample,
        opts.seed,
        grid.root / "readback",
    )
    v.logs_lost, v.logs_doubled = back.logs_lost, back.logs_doubled
    v.outputs_mismatch, v.results_checked = back.outputs_mismatch, back.checked
    v.results_unreadable = back.unreadable
    v.results_undigested = sum(
        1 for a in audits.values() if a.status in ("FINISHED", "FAILED") and not a.result_digest
    )

    # The human part: what went wrong, with job ids and blocks.
    say(f"head block {head}; {count} jobs: {v.by_state}")
    for j in v.lost_ids:
        say(f"LOST job {j}: still {states[j].name} after the drain")
    for j in v.doubled_ids:
        say(f"DOUBLED job {j}: {doubles[j]}")
    if v.credit_drift:
        say(
            f"CREDIT DRIFT at block {grid_audit.block}: token held "
            f"{grid_audit.token_held} - balances {grid_audit.balances_total} - live escrows "
            f"{grid_audit.live_escrow} - fees {grid_audit.accrued_fees} - surplus "
            f"{grid_audit.surplus} = {v.credit_drift}"
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
    for line in inj.crashed:
        say(f"CRASHED: {line}")
    for line in money.details[:20]:
        say(f"COMPUTE: {line}")
    for line in back.details:
        say(f"RESULTS: {line}")
    return v
