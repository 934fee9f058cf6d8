"""The default policy as first written, kept as the reference its optimised form must match.

A plain transcription of the EASY-over-the-grid algorithm that ``placement.late_binding``
documents: every job checks every suitable provider. Slow on large grids, obviously right;
``test_placement_equivalence.py`` checks the optimised policy decides exactly the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from metascheduler.placement.eligibility import could_run, unplaceable_reason
from metascheduler.placement.grid import fcfs_order
from metascheduler.placement.model import (
    Decisions,
    PendingJob,
    Placement,
    ProviderState,
    Unplaceable,
)
from metascheduler.placement.view import ProviderView


class _Reservation:
    def __init__(self, shadow: float, cpus: int, gpus: int, mem: int) -> None:
        self.shadow = shadow
        self.spare_cpus, self.spare_gpus, self.spare_mem = cpus, gpus, mem


def _suitable(
    job: PendingJob, providers: Sequence[ProviderState], views: list[ProviderView]
) -> list[ProviderView] | str:
    reason = unplaceable_reason(job, providers)
    if reason is not None:
        return reason
    able = [v for v in views if v.state.alive and could_run(job, v.state)]
    left = [v for v in able if v.provider.lower() not in job.refused_by]
    if able and not left:
        return f"refused by every provider able to run it ({len(able)})"
    return left


def reference_decide(
    pending: Sequence[PendingJob], providers: Sequence[ProviderState], now: float
) -> Decisions:
    views = [ProviderView(p, i, now) for i, p in enumerate(providers)]
    placements: list[Placement] = []
    unplaceable: list[Unplaceable] = []
    reservations: dict[int, _Reservation] = {}
    backfill: list[tuple[PendingJob, list[ProviderView]]] = []
    for job in fcfs_order(pending):
        suitable = _suitable(job, providers, views)
        if isinstance(suitable, str):
            unplaceable.append(Unplaceable(job.job_id, suitable))
        elif any(v.index in reservations for v in suitable):
            backfill.append((job, suitable))
        elif suitable:
            placement = _start_now(job, suitable, reservations, now)
            if placement is not None:
                placements.append(placement)
            else:
                view, shadow, spare = _reserve(job, suitable)
                reservations[view.index] = _Reservation(shadow, *spare)
    backfill.sort(key=lambda c: (c[0].est_runtime_s, c[0].submitted_at, c[0].job_id))
    for job, suitable in backfill:
        placement = _start_now(job, suitable, reservations, now)
        if placement is not None:
            placements.append(placement)
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
