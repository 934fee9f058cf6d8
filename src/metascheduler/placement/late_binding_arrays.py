"""``late_binding`` for large grids: the same decisions, with each shape's providers as arrays.

A backlog of 200,000 jobs over 2,000 providers comes in about 1,400 shapes. Which providers
suit a shape, at what price, and how they rank is one vector expression over the grid; the
jobs are grouped by shape and put in each pass's order by one sort, with no object per job;
and the providers that cannot take a job are skipped a few at a time in Python, then the rest
as one array. The plain form in :mod:`.late_binding` is faster for small calls, where the
arrays' fixed cost dominates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from heapq import heapify, heappop, heappush, heapreplace
from operator import attrgetter

import numpy as np

from .grid import Grid, Shape, int_array, shape_of
from .model import Decisions, PendingJob, Placement, ProviderState, Unplaceable
from .view import ProviderView, earliest_start


def decide(
    pending: Sequence[PendingJob], providers: Sequence[ProviderState], now: float
) -> Decisions:
    grid = Grid(providers, now)
    room = _Room(grid)
    queue = _Queue(pending)
    # The work goes shape by shape (jobs of one shape share their providers), and a shape leaves
    # a pass as soon as its fate is sealed: in either pass a provider that a shape could use only
    # loses room (pass 1 tries only shapes none of whose providers is reserved; in pass 2
    # reservations are fixed, their spare only shrinks and estimates only grow). So a provider
    # that cannot take a job now cannot take a later one of the same shape either, and when none
    # can, no later job of the shape can start in this pass. Each pass walks the jobs in its
    # order by merging the shapes' queues.
    placements: list[Placement] = []
    unplaceable: list[tuple[float, int, str]] = []
    ranked: dict[int, _Ranked] = {}  # by shape number
    backfill: list[tuple[int, int]] = []  # a shape, and how many of its jobs pass 1 took

    def place(job: PendingJob, started: tuple[int, int]) -> None:
        index, price = started
        placements.append(Placement(job.job_id, providers[index].provider, price))

    # Pass 1, first come first served: the front of the queue, and who holds reservations.
    taken = [0] * queue.shapes
    heads = [(*queue.fcfs_key(number, 0), number) for number in range(queue.shapes)]
    heapify(heads)
    while heads:
        number = heappop(heads)[-1]
        k = taken[number]
        job = queue.fcfs_job(number, k)
        suitable = grid.arrays.suitable(job)
        if isinstance(suitable, str):
            unplaceable += (
                (j.submitted_at, j.job_id, suitable) for j in queue.fcfs_from(number, k)
            )
        elif room.any_reserved(suitable):
            # An older job holds its way: this one and every later one of its shape wait for
            # the backfill.
            backfill.append((number, k))
        elif len(suitable):  # (empty: every provider that could run it is silent: hold)
            order = ranked.get(number)
            if order is None:
                order = ranked[number] = _Ranked(job, suitable, grid, room)
            started = order.start_now(job, room, now)
            if started is not None:
                place(job, started)
            else:
                room.reserve(*earliest_start(job, [grid.views[i] for i in suitable.tolist()]))
            taken[number] = k = k + 1
            if k < queue.size(number):
                heappush(heads, (*queue.fcfs_key(number, k), number))
    # Pass 2, shortest estimate first. The ranks are made again, as reservations now count in
    # them: from what pass 1 left of each shape's providers.
    max_free = room.max_free_cpus()
    waiting: dict[int, tuple[np.ndarray, int]] = {}  # a shape's jobs, and how many were tried
    heads2 = []
    for number, k in backfill:
        jobs = queue.sjbf_from(number, k)
        job = pending[jobs[0]]
        if job.cpus <= max_free:  # (a shape wider than every free room never starts)
            waiting[number] = jobs, 0
            heads2.append((*_sjbf_key(job), number))
    heapify(heads2)
    first_ranks = ranked
    ranked = {}
    while heads2:
        number = heads2[0][-1]
        jobs, k = waiting[number]
        job = pending[jobs[k]]
        waiting[number] = jobs, k + 1
        if job.cpus > max_free:
            heappop(heads2)
            continue
        order = ranked.get(number)
        if order is None:
            tried = first_ranks.get(number)
            suitable = tried.remaining() if tried is not None else grid.arrays.suitable(job)
            assert not isinstance(suitable, str)  # unplaceable shapes never reach pass 2
            order = ranked[number] = _Ranked(job, suitable, grid, room)
        started = order.start_now(job, room, now)
        if started is None or k + 1 == len(jobs):
            heappop(heads2)
        else:
            heapreplace(heads2, (*_sjbf_key(pending[jobs[k + 1]]), number))
        if started is not None:
            place(job, started)
            if room.cpus[started[0]] + job.cpus == max_free:  # only it lost room: was it the max?
                max_free = room.max_free_cpus()
    unplaceable.sort()  # first come, first served, as they were found
    return Decisions(placements, [Unplaceable(i, reason) for _, i, reason in unplaceable])


_sjbf_key = attrgetter("est_runtime_s", "submitted_at", "job_id")


class _Numbers(dict[Shape, int]):
    """Numbers shapes as they are first seen."""

    def __missing__(self, shape: Shape) -> int:
        self[shape] = number = len(self)
        return number


class _Queue:
    """The pending jobs by shape, each shape's in both passes' orders: first come first served
    (submit time, then job id), and shortest estimate first (then submit time, then job id)."""

    def __init__(self, pending: Sequence[PendingJob]) -> None:
        self.pending = pending
        n = len(pending)
        numbers = _Numbers()
        shape = np.fromiter(map(numbers.__getitem__, map(shape_of, pending)), np.intp, n)
        self.shapes = len(numbers)
        submitted = np.fromiter(map(attrgetter("submitted_at"), pending), np.float64, n)
        estimate = np.fromiter(map(attrgetter("est_runtime_s"), pending), np.float64, n)
        ids = int_array(map(attrgetter("job_id"), pending))
        # First come first served over all jobs, then by shape (a stable sort keeps the order
        # within each); shortest estimate first within each shape, again stable.
        fcfs = np.lexsort((ids, submitted))
        fcfs = fcfs[np.argsort(shape[fcfs], kind="stable")]
        sjbf = fcfs[np.lexsort((estimate[fcfs], shape[fcfs]))]
        starts = np.searchsorted(shape[fcfs], np.arange(self.shapes + 1))
        # Each job's place in its shape's first-come-first-served order.
        self._fcfs_rank = np.empty(n, np.intp)
        self._fcfs_rank[fcfs] = np.arange(n) - np.repeat(starts[:-1], np.diff(starts))
        self._fcfs = fcfs.tolist()
        self._sjbf = sjbf
        self._starts = starts.tolist()

    def size(self, number: int) -> int:
        return self._starts[number + 1] - self._starts[number]

    def fcfs_job(self, number: int, k: int) -> PendingJob:
        """The shape's k-th job, first come first served."""
        return self.pending[self._fcfs[self._starts[number] + k]]

    def fcfs_key(self, number: int, k: int) -> tuple[float, int]:
        job = self.fcfs_job(number, k)
        return job.submitted_at, job.job_id

    def fcfs_from(self, number: int, k: int) -> Iterable[PendingJob]:
        """The shape's jobs from the k-th on, first come first served."""
        pending = self.pending
        return (pending[i] for i in self._fcfs[self._starts[number] + k : self._starts[number + 1]])

    def sjbf_from(self, number: int, k: int) -> np.ndarray:
        """The shape's jobs but its first k (first come first served), shortest estimate first
        (their positions in ``pending``)."""
        jobs = self._sjbf[self._starts[number] : self._starts[number + 1]]
        return jobs[self._fcfs_rank[jobs] >= k] if k else jobs


class _Room:
    """What each provider has free now and the reservation it carries, twice: as lists, for
    looking at a few providers, and as arrays, for looking at many in one vector expression."""

    def __init__(self, grid: Grid) -> None:
        self.views = views = grid.views
        self.alive = grid.arrays.alive
        # Where a queued job still waits nothing starts now: -1 CPUs free says so.
        self.cpus = [v.free_cpus if v.starts_now else -1 for v in views]
        self.gpus = [v.free_gpus for v in views]
        self.mem = [v.free_mem for v in views]
        self.shadow = [math.inf] * len(views)  # no reservation: never delayed
        self.spare_cpus = [0] * len(views)
        self.spare_gpus = [0] * len(views)
        self.spare_mem = [0] * len(views)
        self.reservations = 0
        self.arrays = {
            name: int_array(getattr(self, name))
            for name in ("cpus", "gpus", "mem", "spare_cpus", "spare_gpus", "spare_mem")
        }
        self.arrays["shadow"] = np.array(self.shadow, dtype=np.float64)
        self.reserved = np.zeros(len(views), dtype=bool)

    def max_free_cpus(self) -> int:
        alive = self.arrays["cpus"][self.alive]
        return int(alive.max()) if len(alive) else 0

    def any_reserved(self, indices: np.ndarray) -> bool:
        return bool(self.reservations and self.reserved[indices].any())

    def reserve(self, view: ProviderView, shadow: float, spare: tuple[int, int, int]) -> None:
        i = view.index
        self.reservations += 1
        self.reserved[i] = True
        self._set(i, shadow=shadow, spare_cpus=spare[0], spare_gpus=spare[1], spare_mem=spare[2])

    def takes(self, i: int, job: PendingJob, ends: float) -> bool:
        """Can the job start on provider ``i`` now without delaying its reservation?"""
        c, g, m = job.cpus, job.gpus, job.mem_mb
        return (
            self.cpus[i] >= c
            and self.gpus[i] >= g
            and self.mem[i] >= m
            and (
                ends <= self.shadow[i]
                or (self.spare_cpus[i] >= c and self.spare_gpus[i] >= g and self.spare_mem[i] >= m)
            )
        )

    def take(self, indices: np.ndarray, job: PendingJob, ends: float) -> np.ndarray:
        """``takes`` for each of these providers, as one vector expression."""
        c, g, m = job.cpus, job.gpus, job.mem_mb
        a = self.arrays
        able = a["cpus"][indices] >= c
        able &= a["gpus"][indices] >= g
        able &= a["mem"][indices] >= m
        if self.reservations:
            late = a["shadow"][indices] < ends
            if late.any():
                spare = a["spare_cpus"][indices] >= c
                spare &= a["spare_gpus"][indices] >= g
                spare &= a["spare_mem"][indices] >= m
                able &= ~late | spare  # (would delay the reserved job)
        return able

    def commit(self, i: int, job: PendingJob, ends: float) -> None:
        c, g, m = job.cpus, job.gpus, job.mem_mb
        self._set(i, cpus=self.cpus[i] - c, gpus=self.gpus[i] - g, mem=self.mem[i] - m)
        if ends > self.shadow[i]:
            self._set(
                i,
                spare_cpus=self.spare_cpus[i] - c,
                spare_gpus=self.spare_gpus[i] - g,
                spare_mem=self.spare_mem[i] - m,
            )
        self.views[i].commit(c, g, m, job.est_runtime_s)

    def _set(self, i: int, **values: float) -> None:
        for name, value in values.items():
            getattr(self, name)[i] = value
            self.arrays[name][i] = value


# Providers looked at one by one before the rest are looked at as one array.
_FEW = 16


class _Ranked:
    """A shape's providers in the order the choice among them goes: price, whether reserved,
    size (then the caller's index), from ``first`` on: those before it were found unable to
    take a job of the shape."""

    __slots__ = ("first", "indices", "order", "price", "tie_end")

    def __init__(self, job: PendingJob, indices: np.ndarray, grid: Grid, room: _Room) -> None:
        price = grid.arrays.prices(job, indices)
        reserved = room.reserved[indices]
        size = grid.arrays.cpus[indices]
        by = np.lexsort((indices, size, reserved, price))
        self.indices, price, reserved, size = indices[by], price[by], reserved[by], size[by]
        self.order: list[int] = self.indices.tolist()
        self.price: list[int] = price.tolist()
        # Where each provider's run of ties (equal price, reservation and size) ends: among
        # them the tightest fit wins.
        differs = np.ones(len(by) + 1, dtype=bool)
        differs[1:-1] = (price[1:] != price[:-1]) | (reserved[1:] != reserved[:-1])
        differs[1:-1] |= size[1:] != size[:-1]
        starts = np.flatnonzero(differs)
        self.tie_end: list[int] = np.repeat(starts[1:], np.diff(starts)).tolist()
        self.first = 0

    def remaining(self) -> np.ndarray:
        return self.indices[self.first :]

    def start_now(self, job: PendingJob, room: _Room, now: float) -> tuple[int, int] | None:
        """Start the job now on the best provider where it delays no reservation, if there is
        one: the first in order that can take it or, among those tied with it, the tightest
        fit. Returns the provider's index and the price there.

        Those found before the first that can take it are dropped: they cannot take a later
        job of the shape either.
        """
        order, n = self.order, len(self.order)
        ends = now + job.est_runtime_s
        takes = room.takes
        first = self.first
        few = min(n, first + _FEW)
        while first < few and not takes(order[first], job, ends):
            first += 1
        if first == few < n:
            able = room.take(self.indices[first:], job, ends)
            first = first + int(able.argmax()) if able.any() else n
        self.first = first
        if first == n:
            return None
        best, end = first, self.tie_end[first]
        if end - first <= _FEW:
            cpus = room.cpus
            for k in range(first + 1, end):
                i = order[k]
                if (cpus[i], i) < (cpus[order[best]], order[best]) and takes(i, job, ends):
                    best = k
        else:
            tied = self.indices[first:end]
            able = np.flatnonzero(room.take(tied, job, ends))
            free = room.arrays["cpus"][tied[able]]
            best = first + int(able[np.lexsort((tied[able], free))[0]])
        index = order[best]
        room.commit(index, job, ends)
        return index, self.price[best]
