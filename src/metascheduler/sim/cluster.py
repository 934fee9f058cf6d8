"""One simulated cluster running its own EASY backfilling on requested-time estimates.

This is the provider's local scheduler (Slurm's backfill, in spirit): it knows the estimates of
the jobs it was given, never their runtimes. The head of its queue gets a reservation at the
earliest time enough processors are expected free; later jobs start early only if they do not
delay that reservation.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from metascheduler.placement import ProviderState, RunningJob

from .swf import TraceJob


class EasyCluster:
    def __init__(self, name: str, procs: int, cpu_price: int = 0) -> None:
        self.name = name
        self.procs = procs
        self.cpu_price = cpu_price
        self.free = procs
        self.queue: list[TraceJob] = []
        # (estimated end, job id, procs) of running jobs, sorted: the EASY shadow-time walk.
        self._est_ends: list[tuple[float, int, int]] = []
        self._records: dict[int, RunningJob] = {}  # what the oracle knows of each job here
        self._snapshot: tuple[RunningJob, ...] | None = None  # cached until the next change

    def submit(self, job: TraceJob) -> None:
        self.queue.append(job)
        self._records[job.job_id] = RunningJob(job.job_id, job.procs, 0, 0, None, job.estimate)
        self._snapshot = None

    def finish(self, job: TraceJob, started: float) -> None:
        key = (started + job.estimate, job.job_id, job.procs)
        del self._est_ends[bisect_left(self._est_ends, key)]
        del self._records[job.job_id]
        self.free += job.procs
        self._snapshot = None

    def schedule(self, now: float) -> list[TraceJob]:
        """Start what EASY starts now; return the jobs started."""
        started: list[TraceJob] = []
        queue = self.queue
        while queue and queue[0].procs <= self.free:
            job = queue.pop(0)
            self._start(job, now)
            started.append(job)
        if len(queue) < 2 or self.free == 0:
            return started
        shadow, spare = self._reservation(queue[0].procs)
        waiting = [queue[0]]
        for job in queue[1:]:
            if self.free == 0 or job.procs > self.free:
                waiting.append(job)
            elif now + job.estimate <= shadow:
                self._start(job, now)
                started.append(job)
            elif job.procs <= spare:
                spare -= job.procs
                self._start(job, now)
                started.append(job)
            else:
                waiting.append(job)
        self.queue = waiting
        return started

    def state(self, provider: str, now: float) -> ProviderState:
        """The cluster as the oracle sees it: declared size, prices, and the jobs placed here."""
        if self._snapshot is None:
            self._snapshot = tuple(self._records.values())
        return ProviderState(
            provider=provider,
            cpus=self.procs,
            gpus=0,
            mem_mb=0,
            cpu_price=self.cpu_price,
            gpu_price=0,
            gb_price=0,
            labels=frozenset(),
            alive=True,
            jobs=self._snapshot,
        )

    def _start(self, job: TraceJob, now: float) -> None:
        self.free -= job.procs
        insort(self._est_ends, (now + job.estimate, job.job_id, job.procs))
        self._records[job.job_id] = RunningJob(job.job_id, job.procs, 0, 0, now, job.estimate)
        self._snapshot = None

    def _reservation(self, procs: int) -> tuple[float, int]:
        """The head's shadow time, and the processors it leaves spare then."""
        avail = self.free
        for end, _, p in self._est_ends:
            avail += p
            if avail >= procs:
                return end, avail - procs
        raise AssertionError(f"a job of {procs} processors never fits {self.name}")
