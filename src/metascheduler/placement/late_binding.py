"""The default policy: hold jobs in the meta-queue and backfill across the whole grid.

Binding a job to a cluster early is a bet on a runtime estimate that is usually far too long;
a job queued behind the wrong cluster cannot move when a neighbour frees up (there is no
migration). So this policy never queues a job at a provider: it releases a job only when the job
can start there now, and otherwise keeps it in the meta-queue, where it can still go to whichever
provider frees up first.

Holding alone would starve wide jobs behind a stream of narrow ones, so the meta-queue runs EASY
backfilling over the grid as a whole: jobs go first come, first served; the first job that cannot
start anywhere gets a reservation at its earliest expected start on any provider it could use
(the "shadow" time, from running jobs' estimated ends), and later jobs may jump ahead only where
they do not delay it: on another provider, or on the reserved one if they end before the shadow
time or use only what the reservation leaves spare. On a grid of one provider this is exactly
EASY on the merged machine, which is why the grid comes close to the merged ideal.

A reservation protects only the jobs that could use its provider. A held job none of whose
providers is reserved (typically a wide job that only the large provider can run, behind a
narrow job reserved on a small one) would have no protection at all, so it gets a reservation
of its own. Each provider carries at most one, so backfilling stays as free as in EASY.

Among providers where a job can start now, the cheaper wins (price is the second objective after
start time), then one whose reservation it does not touch, then the smallest provider, then the
tightest fit: narrow jobs fill the small providers first and leave the large ones, the only
place wide jobs can run, in large holes.
"""

from __future__ import annotations

from collections.abc import Sequence

from .grid import Grid, fcfs_order
from .model import Decisions, JobRequest, Placement, ProviderState, Unplaceable
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
        self, pending: Sequence[JobRequest], providers: Sequence[ProviderState], now: float
    ) -> Decisions:
        grid = Grid(providers, now)
        placements: list[Placement] = []
        unplaceable: list[Unplaceable] = []
        reservations: dict[int, _Reservation] = {}  # by provider index
        max_free = grid.max_free_cpus()
        for job in fcfs_order(pending):
            suitable = grid.suitable(job)
            if isinstance(suitable, str):
                unplaceable.append(Unplaceable(job.job_id, suitable))
                continue
            if not suitable:
                continue  # every provider that could run it is silent: hold it
            if job.cpus > max_free and any(v.index in reservations for v in suitable):
                continue  # fast path: it starts nowhere now, and a job ahead holds its way
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
            if best is not None:
                best.commit(job.cpus, job.gpus, job.mem_mb, job.est_runtime_s)
                placements.append(Placement(job.job_id, best.provider, best_key[0]))
                res = reservations.get(best.index)
                if res is not None and ends > res.shadow:
                    res.spare_cpus -= job.cpus
                    res.spare_gpus -= job.gpus
                    res.spare_mem -= job.mem_mb
                max_free = grid.max_free_cpus()
            elif not any(v.index in reservations for v in suitable):
                # The first job that cannot start anywhere it could run gets a reservation.
                view, shadow, spare = _reserve(job, suitable)
                reservations[view.index] = _Reservation(shadow, *spare)
        return Decisions(placements, unplaceable)


def _reserve(
    job: JobRequest, suitable: list[ProviderView]
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
