"""The grid as one ``decide()`` call sees it: provider views, and which of them suit each job."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import attrgetter

from metascheduler.billing import price_per_minute

from .eligibility import could_run, unplaceable_reason
from .model import PendingJob, ProviderState
from .view import ProviderView

# Jobs of the same shape have the same suitable providers: thousands of pending jobs come in a
# few dozen shapes, so the check runs once per shape, not once per job and provider. The
# providers that refused a job are part of its shape (jobs never refused share theirs).
Shape = tuple[int, int, int, int, frozenset[str], frozenset[str]]
_Row = tuple[ProviderView, int, int, int]  # a view and its capacity: CPUs, GPUs, memory


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
        return (
            job.cpus,
            job.gpus,
            job.mem_mb,
            job.max_price_per_minute,
            job.labels,
            job.refused_by,
        )

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
