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
from heapq import heapify, heappop, heappush, heapreplace

from metascheduler.billing import price_per_minute

from . import late_binding_arrays
from .grid import Grid, Shape, gc_paused
from .model import Decisions, PendingJob, Placement, ProviderState, Unplaceable
from .view import ProviderView, earliest_start

# Calls of at least this many (pending job, provider) pairs go to the array form: below it the
# arrays' fixed cost outweighs what they save (see ``scripts/bench_policy.py``).
ARRAYS_FROM = 300_000


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
        with gc_paused():
            if len(pending) * len(providers) >= ARRAYS_FROM:
                return late_binding_arrays.decide(pending, providers, now)
            return decide_plain(pending, providers, now)


def decide_plain(
    pending: Sequence[PendingJob], providers: Sequence[ProviderState], now: float
) -> Decisions:
    """The policy in plain Python: one object per job, a loop per provider."""
    grid = Grid(providers, now)
    # The work goes shape by shape (jobs of one shape share their providers), and a shape
    # leaves a pass as soon as its fate is sealed: in either pass a provider that a shape
    # could use only loses room (pass 1 tries only shapes none of whose providers is
    # reserved; in pass 2 reservations are fixed, their spare only shrinks and estimates only
    # grow). So a provider that cannot take a job now cannot take a later one of the same
    # shape either, and when none can, no later job of the shape can start in this pass.
    # Each pass walks the jobs in its order by merging the shapes' queues.
    by_shape: dict[Shape, list[PendingJob]] = {}
    for job in pending:
        by_shape.setdefault(grid.shape(job), []).append(job)
    shapes = list(by_shape.values())
    placements: list[Placement] = []
    unplaceable: list[tuple[float, int, str]] = []
    reservations: dict[int, _Reservation] = {}  # by provider index
    reserved: list[ProviderView] = []  # the providers in ``reservations``
    # Each shape's providers, cheapest first (see _rank), less those that could not take a
    # job of the shape. By shape number.
    ranked: dict[int, _Ranked] = {}
    backfill: list[tuple[int, list[PendingJob]]] = []
    # Pass 1, first come first served: the front of the queue, and who holds reservations.
    queues = [[(j.submitted_at, j.job_id, j) for j in jobs] for jobs in shapes]
    heads = []
    for number, queue in enumerate(queues):
        heapify(queue)
        heads.append((*queue[0][:2], number))
    heapify(heads)
    while heads:
        number = heappop(heads)[-1]
        queue = queues[number]
        job = queue[0][-1]
        suitable = grid.suitable(job)
        if isinstance(suitable, str):
            unplaceable += ((j.submitted_at, j.job_id, suitable) for *_, j in queue)
        elif any(grid.suits(job, v) for v in reserved):
            # An older job holds its way: this one and every later one of its shape wait
            # for the backfill.
            backfill.append((number, [j for *_, j in queue]))
        elif suitable:  # (an empty list: every provider that could run it is silent: hold)
            heappop(queue)
            order = ranked.get(number)
            if order is None:
                order = ranked[number] = _rank(job, suitable, reservations)
            started = _start_now(job, order, reservations, now)
            if started is not None:
                placements.append(Placement(job.job_id, started.provider, started.price(job)))
            else:
                view, shadow, spare = earliest_start(job, suitable)
                reservations[view.index] = _Reservation(shadow, *spare)
                reserved.append(view)
            if queue:
                heappush(heads, (*queue[0][:2], number))
    # Pass 2, shortest estimate first. The ranks are made again, as reservations now count
    # in them: from what pass 1 left of each shape's providers.
    max_free = grid.max_free_cpus()
    queues2: dict[int, list[tuple[float, float, int, PendingJob]]] = {}
    heads2 = []
    for number, jobs in backfill:
        if jobs[0].cpus <= max_free:  # (a shape wider than every free room never starts)
            queue2 = [(j.est_runtime_s, j.submitted_at, j.job_id, j) for j in jobs]
            heapify(queue2)
            queues2[number] = queue2
            heads2.append((*queue2[0][:3], number))
    heapify(heads2)
    left = {number: [entry[-1] for entry in order] for number, order in ranked.items()}
    ranked = {}
    while heads2:
        number = heads2[0][-1]
        queue2 = queues2[number]
        job = heappop(queue2)[-1]
        if job.cpus > max_free:
            heappop(heads2)
            continue
        order = ranked.get(number)
        if order is None:
            suitable = grid.suitable(job)
            assert not isinstance(suitable, str)  # unplaceable shapes never reach pass 2
            tried = left.get(number, suitable)
            order = ranked[number] = _rank(job, tried, reservations)
        started = _start_now(job, order, reservations, now)
        if started is None or not queue2:
            heappop(heads2)
        else:
            heapreplace(heads2, (*queue2[0][:3], number))
        if started is not None:
            placements.append(Placement(job.job_id, started.provider, started.price(job)))
            if started.free_cpus + job.cpus == max_free:  # only it lost room: was it the max?
                max_free = grid.max_free_cpus()
    unplaceable.sort()  # first come, first served, as they were found
    return Decisions(placements, [Unplaceable(i, reason) for _, i, reason in unplaceable])


# A shape's providers in the order the choice among them goes: price, whether reserved, size
# (the caller's index last, unique: views are never compared), each with its view.
_Ranked = list[tuple[int, bool, int, int, ProviderView]]


def _rank(
    job: PendingJob, views: list[ProviderView], reservations: dict[int, _Reservation]
) -> _Ranked:
    c, g, m = job.cpus, job.gpus, job.mem_mb
    order = [
        (price_per_minute(c, g, m, *v.prices), v.index in reservations, v.state.cpus, v.index, v)
        for v in views
    ]
    order.sort()
    return order


def _start_now(
    job: PendingJob,
    order: _Ranked,
    reservations: dict[int, _Reservation],
    now: float,
) -> ProviderView | None:
    """Start the job now on the best provider where it delays no reservation, if there is one.

    The best is the first in ``order`` that can take it, or among those of the same price,
    reservation and size, the tightest fit. Those before it that cannot take the job are
    dropped from ``order`` (they cannot take a later job of the shape either).
    """
    ends = now + job.est_runtime_s
    best: ProviderView | None = None
    group: tuple[int, bool, int] = (0, False, 0)
    kept: _Ranked = []
    stop = len(order)
    for i, entry in enumerate(order):
        price, is_reserved, size, _, view = entry
        if best is not None and (price, is_reserved, size) != group:
            stop = i
            break
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
        kept.append(entry)
        if best is None:
            best, group = view, (price, is_reserved, size)
        elif (view.free_cpus, view.index) < (best.free_cpus, best.index):
            best = view
    order[:stop] = kept
    if best is None:
        return None
    best.commit(job.cpus, job.gpus, job.mem_mb, job.est_runtime_s)
    res = reservations.get(best.index)
    if res is not None and ends > res.shadow:
        res.spare_cpus -= job.cpus
        res.spare_gpus -= job.gpus
        res.spare_mem -= job.mem_mb
    return best
