"""The default policy: hold jobs in the meta-queue and backfill across the whole grid.

Binding a job to a cluster early is a bet on a runtime estimate that is usually far too long;
a job queued behind the wrong cluster cannot move when a neighbour frees up (there is no
migration). So this policy never queues a job at a provider: it releases a job only when the job
can start there now, and otherwise keeps it in the meta-queue, where it can still go to whichever
provider frees up first.

Holding alone would starve wide jobs behind a stream of narrow ones, so the meta-queue runs EASY
backfilling over the grid as a whole, in two passes:

1. First come, first served: jobs at the front of the queue start where they fit, and the first
   job that cannot start anywhere gets a reservation at its earliest expected start on any
   provider it could use (the "shadow" time, from running jobs' estimated ends). A reservation
   protects only the jobs that could use its provider, so a later held job none of whose
   providers is reserved (typically a wide job that only the large provider can run, behind a
   narrow job reserved on a small one) gets a reservation of its own. Each provider carries at
   most one, so backfilling stays as free as in EASY. Every job that could use a reserved
   provider waits for the second pass.
2. Backfill, shortest estimate first (SJBF, Tsafrir, Etsion & Feitelson 2007): the waiting jobs
   start where they do not delay a reservation: on an unreserved provider, or on a reserved one
   if their estimate ends before its shadow time or they use only what it leaves spare. Trying
   short jobs first fills each hole with the jobs whose slowdown a wait hurts most, and it is
   fair where it matters: who gets a reservation is still decided first come, first served, so
   the oldest blocked job on every provider keeps its start time however short the others are.

On a grid of one provider this is exactly EASY with SJBF on the merged machine.

Among providers where a job can start now, the cheaper wins (price is the second objective after
start time), then one whose reservation it does not touch, then the smallest provider, then the
tightest fit: narrow jobs fill the small providers first and leave the large ones, the only
place wide jobs can run, in large holes.
"""

from __future__ import annotations

from collections.abc import Sequence

from .grid import Grid, fcfs_order
from .model import Decisions, PendingJob, Placement, ProviderState, Unplaceable
from .view import ProviderView


class _Reservation:
    """A held job's expected start on one provider, and what it leaves spare there then."""

    __slots__ = ("shadow", "spare_cpus", "spare_gpus", "spare_mem")

    def __init__(self, shadow: float, cpus: int, gpus: int, mem: int) -> None:
        self.shadow = shadow
        self.spare_cpus, self.spare_gpus, self.spare_mem = cpus, gpus, mem


class LateBinding:
    name = "late_binding"

    def decide(
        self, pending: Sequence[PendingJob], providers: Sequence[ProviderState], now: float
    ) -> Decisions:
        grid = Grid(providers, now)
        placements: list[Placement] = []
        unplaceable: list[Unplaceable] = []
        reservations: dict[int, _Reservation] = {}  # by provider index
        backfill: list[tuple[PendingJob, list[ProviderView]]] = []
        # Pass 1, first come first served: the front of the queue, and who holds reservations.
        for job in fcfs_order(pending):
            suitable = grid.suitable(job)
            if isinstance(suitable, str):
                unplaceable.append(Unplaceable(job.job_id, suitable))
            elif any(v.index in reservations for v in suitable):
                backfill.append((job, suitable))  # an older job holds its way: backfill it
            elif suitable:  # (an empty list: every provider that could run it is silent: hold)
                placement = _start_now(job, suitable, reservations, now)
                if placement is not None:
                    placements.append(placement)
                else:
                    view, shadow, spare = _reserve(job, suitable)
                    reservations[view.index] = _Reservation(shadow, *spare)
        # Pass 2, shortest estimate first; a sort of the held jobs, once per call.
        backfill.sort(key=lambda c: (c[0].est_runtime_s, c[0].submitted_at, c[0].job_id))
        max_free = grid.max_free_cpus()
        for job, suitable in backfill:
            if job.cpus > max_free:
                continue  # fast path: it fits nowhere now
            placement = _start_now(job, suitable, reservations, now)
            if placement is not None:
                placements.append(placement)
                max_free = grid.max_free_cpus()
        return Decisions(placements, unplaceable)


def _start_now(
    job: PendingJob,
    suitable: list[ProviderView],
    reservations: dict[int, _Reservation],
    now: float,
) -> Placement | None:
    """Start the job now on the best provider where it delays no reservation, if there is one."""
    ends = now + job.est_runtime_s
    best: ProviderView | None = None
    best_key: tuple[int, bool, int, int, int] = (0, False, 0, 0, 0)
    for view in suitable:
        if not view.fits_now(job):
            continue
        res = reservations.get(view.index)
        if (
            res is not None
            and ends > res.shadow
            and not (
                job.cpus <= res.spare_cpus
                and job.gpus <= res.spare_gpus
                and job.mem_mb <= res.spare_mem
            )
        ):
            continue  # would delay the reserved job
        key = (
            view.price(job),
            res is not None,
            view.state.cpus,
            view.free_cpus - job.cpus,
            view.index,
        )
        if best is None or key < best_key:
            best, best_key = view, key
    if best is None:
        return None
    best.commit(job.cpus, job.gpus, job.mem_mb, job.est_runtime_s)
    res = reservations.get(best.index)
    if res is not None and ends > res.shadow:
        res.spare_cpus -= job.cpus
        res.spare_gpus -= job.gpus
        res.spare_mem -= job.mem_mb
    return Placement(job.job_id, best.provider, best_key[0])


def _reserve(
    job: PendingJob, suitable: list[ProviderView]
) -> tuple[ProviderView, float, tuple[int, int, int]]:
    """The provider where the job is expected to start first (cheaper on a tie), when, and what
    it leaves spare then."""
    best: tuple[float, int, int] | None = None
    chosen: tuple[ProviderView, float, tuple[int, int, int]] | None = None
    for view in suitable:
        start, c, g, m = view.start_estimate(job.cpus, job.gpus, job.mem_mb)
        key = (start, view.price(job), view.index)
        if best is None or key < best:
            best, chosen = key, (view, start, (c, g, m))
    assert chosen is not None  # suitable is never empty here
    return chosen
