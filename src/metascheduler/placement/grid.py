"""The grid as one ``decide()`` call sees it: provider views, and which of them suit each job.

For a large grid the providers' capacities and prices are also held as arrays (built on first
use, so small calls never pay for them): which providers suit a job, and at what price, is then
one vector expression over the whole grid rather than a loop per provider.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from operator import attrgetter

import numpy as np

from metascheduler.billing import MB_PER_GB, price_per_minute

from .eligibility import (
    NO_PROVIDER,
    could_run,
    missing_labels,
    too_dear,
    too_large,
    unplaceable_reason,
)
from .model import PendingJob, ProviderState
from .view import ProviderView

# Jobs of the same shape have the same suitable providers: thousands of pending jobs come in a
# few dozen shapes, so the check runs once per shape, not once per job and provider. The
# providers that refused a job are part of its shape (jobs never refused share theirs).
Shape = tuple[int, int, int, int, frozenset[str], frozenset[str]]
shape_of: attrgetter[Shape] = attrgetter(
    "cpus", "gpus", "mem_mb", "max_price_per_minute", "labels", "refused_by"
)
_Row = tuple[ProviderView, int, int, int]  # a view and its capacity: CPUs, GPUs, memory

# Prices and sizes below this multiply and add up in int64 without overflow (three products
# under 2**60); larger ones, which the chain allows, are computed with Python's integers.
_SMALL = 2**30


def int_array(values: Iterable[int]) -> np.ndarray:
    """int64 when every value fits it, else an array of Python integers: exact either way."""
    listed = list(values)
    try:
        return np.array(listed, dtype=np.int64)
    except OverflowError:
        return np.array(listed, dtype=object)


class Grid:
    def __init__(self, providers: Sequence[ProviderState], now: float) -> None:
        self.now = now
        self.providers = providers
        self.views = [ProviderView(p, i, now) for i, p in enumerate(providers)]
        self._suitable: dict[Shape, list[ProviderView] | str] = {}
        # The alive views by label set, each with its capacity unpacked: a shape's providers are
        # found by one tight filter over the groups that carry its labels.
        self._groups: dict[frozenset[str], list[_Row]] = {}
        for v in self.views:
            s = v.state
            if s.alive:
                self._groups.setdefault(s.labels, []).append((v, s.cpus, s.gpus, s.mem_mb))
        # The dearest prices anywhere: a shape whose max price covers them needs no price check.
        self._dearest = tuple(
            max((getattr(p, name) for p in providers), default=0)
            for name in ("cpu_price", "gpu_price", "gb_price")
        )
        self._arrays: GridArrays | None = None

    @property
    def arrays(self) -> GridArrays:
        if self._arrays is None:
            self._arrays = GridArrays(self.providers)
        return self._arrays

    def suitable(self, job: PendingJob) -> list[ProviderView] | str:
        """The alive providers that could run the job, or why no provider ever could.

        An empty list means the job is held: some provider could run it but none is alive.
        """
        shape = self.shape(job)
        found = self._suitable.get(shape)
        if found is None:
            found = self._alive_that_could_run(job)
            if not found:  # held (a silent provider could run it) or unplaceable
                found = unplaceable_reason(job, self.providers) or found
            elif job.refused_by:
                left = [v for v in found if v.provider.lower() not in job.refused_by]
                found = left or f"refused by every provider able to run it ({len(found)})"
            self._suitable[shape] = found
        return found

    @staticmethod
    def shape(job: PendingJob) -> Shape:
        return shape_of(job)

    def suits(self, job: PendingJob, view: ProviderView) -> bool:
        """Is ``view`` among ``suitable(job)``?"""
        return (
            view.state.alive
            and could_run(job, view.state)
            and view.provider.lower() not in job.refused_by
        )

    def max_free_cpus(self) -> int:
        return max((v.free_cpus for v in self.views if v.state.alive), default=0)

    def _alive_that_could_run(self, job: PendingJob) -> list[ProviderView]:
        c, g, m, labels = job.cpus, job.gpus, job.mem_mb, job.labels
        found = []
        for carried, rows in self._groups.items():
            if labels <= carried:
                found += [v for v, pc, pg, pm in rows if c <= pc and g <= pg and m <= pm]
        most = job.max_price_per_minute
        if price_per_minute(c, g, m, *self._dearest) > most:
            found = [v for v in found if price_per_minute(c, g, m, *v.prices) <= most]
        return found


class GridArrays:
    """The grid's capacities and prices as arrays, and the suitable providers of each shape as
    an array of their indices."""

    def __init__(self, providers: Sequence[ProviderState]) -> None:
        self.providers = providers
        self.cpus = int_array(p.cpus for p in providers)
        self.gpus = int_array(p.gpus for p in providers)
        self.mem = int_array(p.mem_mb for p in providers)
        self.alive = np.array([p.alive for p in providers], dtype=bool)
        prices = [(p.cpu_price, p.gpu_price, p.gb_price) for p in providers]
        self._prices = tuple(int_array(col) for col in zip(*prices, strict=True)) or (
            int_array(()),
            int_array(()),
            int_array(()),
        )
        self._small_prices = all(0 <= x < _SMALL for row in prices for x in row)
        self._dearest = tuple(max(col, default=0) for col in zip(*prices, strict=True)) or (0, 0, 0)
        # Providers by label set: a job's labels are checked once per distinct set carried.
        carried: dict[frozenset[str], int] = {}
        self._label_set = np.array(
            [carried.setdefault(p.labels, len(carried)) for p in providers], dtype=np.intp
        )
        self._carried = list(carried)
        self._carrying: dict[frozenset[str], np.ndarray] = {}
        self._suitable: dict[Shape, np.ndarray | str] = {}
        self._cheapest: dict[tuple[int, int, int, int, frozenset[str]], int] = {}

    def suitable(self, job: PendingJob) -> np.ndarray | str:
        """``Grid.suitable``, as the providers' indices (ascending)."""
        shape = shape_of(job)
        found = self._suitable.get(shape)
        if found is None:
            found = self._alive_that_could_run(job)
            if not len(found):  # held (a silent provider could run it) or unplaceable
                found = self._unplaceable_reason(job) or found
            elif job.refused_by:
                providers = self.providers
                left = [
                    i for i in found.tolist() if providers[i].provider.lower() not in job.refused_by
                ]
                found = (
                    np.array(left, dtype=np.intp)
                    if left
                    else f"refused by every provider able to run it ({len(found)})"
                )
            self._suitable[shape] = found
        return found

    def prices(self, job: PendingJob, indices: np.ndarray) -> np.ndarray:
        """The job's price per minute at each of these providers (``billing.price_per_minute``)."""
        c, g, m = job.cpus, job.gpus, job.mem_mb
        cpu, gpu, gb = (prices[indices] for prices in self._prices)
        if not (self._small_prices and 0 <= c < _SMALL and 0 <= g < _SMALL and 0 <= m < _SMALL):
            cpu, gpu, gb = cpu.astype(object), gpu.astype(object), gb.astype(object)
        return c * cpu + g * gpu + (m * gb) // MB_PER_GB

    def _alive_that_could_run(self, job: PendingJob) -> np.ndarray:
        able = self.alive & self._carries(job.labels)
        able &= self.cpus >= job.cpus
        able &= self.gpus >= job.gpus
        able &= self.mem >= job.mem_mb
        found = np.flatnonzero(able)
        most = job.max_price_per_minute
        if price_per_minute(job.cpus, job.gpus, job.mem_mb, *self._dearest) <= most:
            return found
        return found[self.prices(job, found) <= most]

    def cheapest_price(self, job: PendingJob) -> int:
        """The lowest price among the providers that could ever run the job (alive or not,
        ``eligibility.could_run``), 0 if none could; once per shape (refusals aside)."""
        key = (job.cpus, job.gpus, job.mem_mb, job.max_price_per_minute, job.labels)
        cheapest = self._cheapest.get(key)
        if cheapest is None:
            able = self._carries(job.labels) & (self.cpus >= job.cpus)
            able &= self.gpus >= job.gpus
            able &= self.mem >= job.mem_mb
            prices = self.prices(job, np.flatnonzero(able))
            prices = prices[prices <= job.max_price_per_minute]
            cheapest = self._cheapest[key] = int(prices.min()) if len(prices) else 0
        return cheapest

    def _unplaceable_reason(self, job: PendingJob) -> str | None:
        """``eligibility.unplaceable_reason``, over the arrays."""
        if not len(self.cpus):
            return NO_PROVIDER
        labelled = np.flatnonzero(self._carries(job.labels))
        if not len(labelled):
            return missing_labels(job)
        cpus, gpus, mem = self.cpus[labelled], self.gpus[labelled], self.mem[labelled]
        big_enough = labelled[(cpus >= job.cpus) & (gpus >= job.gpus) & (mem >= job.mem_mb)]
        if not len(big_enough):
            largest = np.lexsort((mem, gpus, cpus))[-1]
            return too_large(job, int(cpus[largest]), int(gpus[largest]), int(mem[largest]))
        cheapest = int(self.prices(job, big_enough).min())
        if cheapest > job.max_price_per_minute:
            return too_dear(job, cheapest)
        return None

    def _carries(self, labels: frozenset[str]) -> np.ndarray:
        """Which providers carry all these labels."""
        carrying = self._carrying.get(labels)
        if carrying is None:
            by_set = np.array([labels <= s for s in self._carried], dtype=bool)
            carrying = self._carrying[labels] = by_set[self._label_set]
        return carrying


def cheapest_prices(jobs: Sequence[PendingJob], providers: Sequence[ProviderState]) -> list[int]:
    """Each job's lowest price among the providers that could ever run it (alive or not:
    ``eligibility.could_run``), 0 where none could. Once per job shape over arrays: a loop over
    every job and provider takes some 16 s for 20,000 jobs over 2,000 providers."""
    arrays = GridArrays(providers)
    return [arrays.cheapest_price(job) for job in jobs]


def fcfs_order(pending: Sequence[PendingJob]) -> list[PendingJob]:
    """First come, first served; the job id breaks ties so every caller sees the same order."""
    return sorted(pending, key=attrgetter("submitted_at", "job_id"))


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cycle collection while a call builds its many short-lived tuples and lists.

    A large call allocates hundreds of thousands of them, which sets off full collections over
    every object the process holds: half the call's time on a 200,000-job backlog. None of them
    forms a cycle, so reference counting frees them all the same.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
