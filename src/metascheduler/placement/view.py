"""A provider's expected future during one ``decide()`` call.

Built afresh from a :class:`ProviderState` at every call (policies keep no state between calls),
then updated as the call places jobs, so that a batch of decisions accounts for itself.

The expectation is the one the oracle can honestly form: running jobs hold their resources until
``started_at + est_runtime_s`` (or until now, if that has passed: an overrunning job ends any
moment), and jobs queued at the provider start in placement order, first come first served, each
as soon as what ended before frees enough. Actual runtimes are never known.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable

from .eligibility import job_price
from .model import PendingJob, ProviderState

# (estimated end, cpus, gpus, mem_mb) of a job holding resources.
_End = tuple[float, int, int, int]


class ProviderView:
    __slots__ = (
        "_committed",
        "_ends",
        "_pos",
        "_t",
        "free_cpus",
        "free_gpus",
        "free_mem",
        "index",
        "now",
        "prices",
        "state",
    )

    def __init__(self, state: ProviderState, index: int, now: float) -> None:
        self.state = state
        self.index = index  # the caller's order: the last tie-breaker, so decisions are stable
        self.now = now
        self.prices = (state.cpu_price, state.gpu_price, state.gb_price)
        # Invariant: free_* = capacity minus what the jobs in _ends[_pos:] hold at time _t.
        self._t = now
        self._pos = 0
        self._ends: list[_End] | None = None  # sorted lazily: most calls only ask "fits now?"
        self._committed: list[_End] = []  # placed during this call while _ends was not built
        cpus, gpus, mem = state.cpus, state.gpus, state.mem_mb
        queued = []
        for job in state.jobs:
            if job.started_at is None:
                queued.append(job)
            else:
                cpus -= job.cpus
                gpus -= job.gpus
                mem -= job.mem_mb
        self.free_cpus, self.free_gpus, self.free_mem = cpus, gpus, mem
        for job in queued:
            self.commit(job.cpus, job.gpus, job.mem_mb, job.est_runtime_s)

    @property
    def provider(self) -> str:
        return self.state.provider

    def price(self, job: PendingJob) -> int:
        return job_price(job, self.state)

    @property
    def starts_now(self) -> bool:
        """Could a job start here now? Not while a job queued here is still waiting (FCFS)."""
        return self._t <= self.now

    def fits_now(self, job: PendingJob) -> bool:
        """Would the job start now? Never while an earlier queued job still waits (FCFS)."""
        return (
            self._t <= self.now
            and job.cpus <= self.free_cpus
            and job.gpus <= self.free_gpus
            and job.mem_mb <= self.free_mem
        )

    def start_estimate(self, cpus: int, gpus: int, mem: int) -> tuple[float, int, int, int]:
        """Earliest expected start of a job of this size, and what is left free at that moment.

        The job must fit the provider's capacity (check eligibility first), else this raises.
        """
        c, g, m, t = self.free_cpus, self.free_gpus, self.free_mem, self._t
        if cpus <= c and gpus <= g and mem <= m:
            return t, c - cpus, g - gpus, m - mem
        ends = self._sorted_ends()
        for i in range(self._pos, len(ends)):
            end, ec, eg, em = ends[i]
            c += ec
            g += eg
            m += em
            t = max(t, end)
            if cpus <= c and gpus <= g and mem <= m:
                return t, c - cpus, g - gpus, m - mem
        raise ValueError(f"a job of {cpus} CPUs never fits {self.state.provider}")

    def commit(self, cpus: int, gpus: int, mem: int, est_runtime_s: float) -> float:
        """Place a job here (at the back of the provider's queue); return its expected start."""
        fits_now = cpus <= self.free_cpus and gpus <= self.free_gpus and mem <= self.free_mem
        if self._ends is None and self._t <= self.now and fits_now:
            # The common case, starting now: no need to sort anything yet.
            self.free_cpus -= cpus
            self.free_gpus -= gpus
            self.free_mem -= mem
            self._committed.append((self.now + est_runtime_s, cpus, gpus, mem))
            return self.now
        ends = self._sorted_ends()
        c, g, m, t = self.free_cpus, self.free_gpus, self.free_mem, self._t
        pos = self._pos
        while not (cpus <= c and gpus <= g and mem <= m):
            if pos == len(ends):
                raise ValueError(f"a job of {cpus} CPUs never fits {self.state.provider}")
            end, ec, eg, em = ends[pos]
            c += ec
            g += eg
            m += em
            t = max(t, end)
            pos += 1
        self._pos, self._t = pos, t
        self.free_cpus, self.free_gpus, self.free_mem = c - cpus, g - gpus, m - mem
        insort(ends, (t + est_runtime_s, cpus, gpus, mem), lo=pos)
        return t

    def _sorted_ends(self) -> list[_End]:
        if self._ends is None:
            now = self.now
            ends = [
                (max(now, job.started_at + job.est_runtime_s), job.cpus, job.gpus, job.mem_mb)
                for job in self.state.jobs
                if job.started_at is not None
            ]
            ends.extend(self._committed)
            ends.sort()
            self._ends = ends
        return self._ends


def earliest_start(
    job: PendingJob, views: Iterable[ProviderView]
) -> tuple[ProviderView, float, tuple[int, int, int]]:
    """The provider where the job is expected to start first (cheaper on a tie), when, and what
    it leaves spare then. ``views`` must not be empty."""
    best: tuple[float, int, int] | None = None
    chosen: tuple[ProviderView, float, tuple[int, int, int]] | None = None
    for view in views:
        start, c, g, m = view.start_estimate(job.cpus, job.gpus, job.mem_mb)
        key = (start, view.price(job), view.index)
        if best is None or key < best:
            best, chosen = key, (view, start, (c, g, m))
    assert chosen is not None  # views is never empty
    return chosen
