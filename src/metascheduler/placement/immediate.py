"""Simple rules that bind every job to a provider at once: the field the default policy must beat.

Each places every pending job it can in this very call, on the provider its rule prefers among
the alive ones that could run it, and lets that provider's own scheduler queue it. Jobs placed
earlier in the same call count as queued at their provider, so a burst of submissions spreads.
Every rule falls back on price, then on the caller's provider order, to break ties.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from .grid import Grid, fcfs_order
from .model import Decisions, PendingJob, Placement, ProviderState, Unplaceable
from .view import ProviderView

# A rule ranks the candidate providers for one job: the smallest key wins.
_Rule = Callable[[PendingJob, list[ProviderView], "_Loads"], ProviderView]


class _Loads:
    """Per provider work, for the load-based rules: CPUs demanded, and CPU-seconds still to run
    by the estimates (running jobs count their estimated remainder, queued ones all of it)."""

    def __init__(self, grid: Grid) -> None:
        now = grid.now
        self.cpus: list[int] = []
        self.cpu_seconds: list[float] = []
        for view in grid.views:
            demand, work = 0, 0.0
            for job in view.state.jobs:
                demand += job.cpus
                left = job.est_runtime_s
                if job.started_at is not None:
                    left = max(0.0, job.started_at + left - now)
                work += job.cpus * left
            self.cpus.append(demand)
            self.cpu_seconds.append(work)

    def add(self, view: ProviderView, job: PendingJob) -> None:
        self.cpus[view.index] += job.cpus
        self.cpu_seconds[view.index] += job.cpus * job.est_runtime_s


class ImmediatePolicy:
    def __init__(self, name: str, rule: _Rule) -> None:
        self.name = name
        self._rule = rule

    def decide(
        self, pending: Sequence[PendingJob], providers: Sequence[ProviderState], now: float
    ) -> Decisions:
        grid = Grid(providers, now)
        loads = _Loads(grid)
        placements: list[Placement] = []
        unplaceable: list[Unplaceable] = []
        for job in fcfs_order(pending):
            suitable = grid.suitable(job)
            if isinstance(suitable, str):
                unplaceable.append(Unplaceable(job.job_id, suitable))
                continue
            if not suitable:
                continue  # every provider that could run it is silent: hold it
            view = self._rule(job, suitable, loads)
            view.commit(job.cpus, job.gpus, job.mem_mb, job.est_runtime_s)
            loads.add(view, job)
            placements.append(Placement(job.job_id, view.provider, view.price(job)))
        return Decisions(placements, unplaceable)


def _start(job: PendingJob, view: ProviderView) -> float:
    return view.start_estimate(job.cpus, job.gpus, job.mem_mb)[0]


def earliest_start(job: PendingJob, views: list[ProviderView], loads: _Loads) -> ProviderView:
    """Where the job is expected to start first, by running jobs' limits and the queue there."""
    return min(views, key=lambda v: (_start(job, v), v.price(job), v.index))


def cheapest(job: PendingJob, views: list[ProviderView], loads: _Loads) -> ProviderView:
    """The lowest price; the earliest expected start among equal prices."""
    return min(views, key=lambda v: (v.price(job), _start(job, v), v.index))


def best_fit(job: PendingJob, views: list[ProviderView], loads: _Loads) -> ProviderView:
    """Capacity-aware, no runtime estimates: where the job starts now leaving the fewest CPUs
    idle; if it starts nowhere now, where the CPUs demanded weigh least on the capacity."""

    def key(v: ProviderView) -> tuple[int, float, int, int]:
        if v.fits_now(job):
            return (0, v.free_cpus - job.cpus, v.price(job), v.index)
        return (1, loads.cpus[v.index] / v.state.cpus, v.price(job), v.index)

    return min(views, key=key)


def least_loaded(job: PendingJob, views: list[ProviderView], loads: _Loads) -> ProviderView:
    """The least estimated work per CPU still to run."""
    return min(
        views, key=lambda v: (loads.cpu_seconds[v.index] / v.state.cpus, v.price(job), v.index)
    )


def round_robin(job: PendingJob, views: list[ProviderView], loads: _Loads) -> ProviderView:
    """Turn by job id, so that it needs no memory between calls."""
    return views[job.job_id % len(views)]


def make_random(seed: int) -> _Rule:
    def pick(job: PendingJob, views: list[ProviderView], loads: _Loads) -> ProviderView:
        # Seeded per job rather than per call, so the same job lands in the same place however
        # the calls are batched.
        return random.Random(seed * 1_000_003 + job.job_id).choice(views)

    return pick
