"""The replay: a trace's jobs arrive at the meta-scheduler, the placement policy decides, the
clusters run them.

The policy sees exactly what the oracle would see (cluster sizes and prices, the jobs it placed,
which started and when, the estimates) through the same :class:`ProviderState` records, and is
called after every instant at which something changed: a job arrived or a job ended.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from metascheduler.placement import PendingJob, Policy, get_policy

from .cluster import EasyCluster
from .swf import TraceJob

# SWF jobs carry no price ceiling: any cluster's price is acceptable.
NO_PRICE_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    procs: int
    cpu_price: int = 0  # credit units per processor-minute


@dataclass(frozen=True, slots=True)
class Outcome:
    job: TraceJob
    cluster: int
    start: float
    price_per_minute: int

    @property
    def end(self) -> float:
        return self.start + self.job.runtime


@dataclass
class SimResult:
    policy: str
    clusters: list[ClusterSpec]
    outcomes: list[Outcome] = field(default_factory=list)
    unplaceable: list[tuple[TraceJob, str]] = field(default_factory=list)
    decide_calls: int = 0


def provider_name(index: int) -> str:
    return f"cluster{index}"


def simulate(
    jobs: Sequence[TraceJob], clusters: Sequence[ClusterSpec], policy: Policy
) -> SimResult:
    """Replay ``jobs`` (in submit order) on ``clusters`` with ``policy`` placing them."""
    sims = [EasyCluster(provider_name(i), c.procs, c.cpu_price) for i, c in enumerate(clusters)]
    index_of = {provider_name(i): i for i in range(len(sims))}
    result = SimResult(policy.name, list(clusters))
    pending: dict[int, PendingJob] = {}
    by_id = {job.job_id: job for job in jobs}
    started_at: dict[int, float] = {}
    price_of: dict[int, int] = {}
    ends: list[tuple[float, int, int]] = []  # (end, job id, cluster) heap
    next_job = 0
    while next_job < len(jobs) or ends:
        now = jobs[next_job].submit if next_job < len(jobs) else ends[0][0]
        if ends and ends[0][0] < now:
            now = ends[0][0]
        touched: set[int] = set()
        while ends and ends[0][0] == now:
            _, job_id, c = heapq.heappop(ends)
            sims[c].finish(by_id[job_id], started_at[job_id])
            touched.add(c)
        while next_job < len(jobs) and jobs[next_job].submit == now:
            job = jobs[next_job]
            pending[job.job_id] = PendingJob(
                job.job_id, job.procs, 0, 0, NO_PRICE_LIMIT, frozenset(), job.submit, job.estimate
            )
            next_job += 1
        # Clusters start what their own queues allow before the oracle looks at them.
        started = [(c, job) for c in touched for job in sims[c].schedule(now)]
        if pending:
            states = [sim.state(provider_name(i), now) for i, sim in enumerate(sims)]
            decisions = policy.decide(list(pending.values()), states, now)
            result.decide_calls += 1
            for refused in decisions.unplaceable:
                del pending[refused.job_id]
                result.unplaceable.append((by_id[refused.job_id], refused.reason))
            placed_on: set[int] = set()
            for placement in decisions.placements:
                del pending[placement.job_id]
                c = index_of[placement.provider]
                sims[c].submit(by_id[placement.job_id])
                price_of[placement.job_id] = placement.price_per_minute
                placed_on.add(c)
            started += [(c, job) for c in sorted(placed_on) for job in sims[c].schedule(now)]
        for c, job in started:
            started_at[job.job_id] = now
            heapq.heappush(ends, (now + job.runtime, job.job_id, c))
            result.outcomes.append(Outcome(job, c, now, price_of[job.job_id]))
    if pending:
        raise AssertionError(f"{len(pending)} jobs never placed: the policy held them forever")
    return result


def simulate_merged(jobs: Sequence[TraceJob], clusters: Sequence[ClusterSpec]) -> SimResult:
    """The ideal: one EASY cluster with all the processors, every job handed to it at once."""
    merged = ClusterSpec(sum(c.procs for c in clusters), min(c.cpu_price for c in clusters))
    result = simulate(jobs, [merged], get_policy("round_robin"))
    result.policy = "merged"
    return result
