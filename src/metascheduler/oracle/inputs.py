"""Store rows to the placement policy's plain records (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from metascheduler.billing import funded_seconds
from metascheduler.chain.types import JobStatus
from metascheduler.placement import PendingJob, ProviderState, RunningJob
from metascheduler.store.models import Provider

#: A run time estimate for a job with neither a time limit nor a finite funding.
MAX_ESTIMATE_S = 30 * 24 * 3600.0


class JobFields(Protocol):
    """What the oracle reads of a job: a `store.models.Job`, or a plain row of the jobs table
    (the oracle reads backlogs as plain rows, which are much cheaper to build)."""

    @property
    def job_id(self) -> int: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def status(self) -> int: ...
    @property
    def escrow(self) -> int: ...
    @property
    def max_price_per_minute(self) -> int: ...
    @property
    def cpus(self) -> int: ...
    @property
    def gpus(self) -> int: ...
    @property
    def mem_mb(self) -> int: ...
    @property
    def labels(self) -> list[Any]: ...
    @property
    def time_limit_minutes(self) -> int | None: ...
    @property
    def requested_at(self) -> int: ...
    @property
    def started_at(self) -> int | None: ...


def estimate_runtime_s(job: JobFields) -> float:
    """The time limit if the spec gives one, else what the escrow funds at the max price."""
    if job.time_limit_minutes:
        return float(job.time_limit_minutes * 60)
    return float(
        min(MAX_ESTIMATE_S, funded_seconds(escrow=job.escrow, price=job.max_price_per_minute))
    )


def pending_job(job: JobFields, refused_by: frozenset[str] = frozenset()) -> PendingJob:
    """The job as placement sees it; `refused_by` (lower-case addresses) are never offered it."""
    return PendingJob(
        job_id=job.job_id,
        cpus=job.cpus,
        gpus=job.gpus,
        mem_mb=job.mem_mb,
        max_price_per_minute=job.max_price_per_minute,
        labels=frozenset(job.labels or ()),
        submitted_at=float(job.requested_at),
        est_runtime_s=estimate_runtime_s(job),
        refused_by=refused_by,
    )


def running_job(job: JobFields, *, queued: bool | None = None) -> RunningJob:
    running = job.status == JobStatus.RUNNING if queued is None else not queued
    return RunningJob(
        job_id=job.job_id,
        cpus=job.cpus,
        gpus=job.gpus,
        mem_mb=job.mem_mb,
        started_at=float(job.started_at) if running and job.started_at else None,
        est_runtime_s=estimate_runtime_s(job),
    )


@dataclass(frozen=True)
class Liveness:
    """How the oracle judges a provider alive: no heartbeat system means always alive."""

    use_heartbeats: bool
    timeout_s: float

    def alive(self, p: Provider, now_wall: float) -> bool:
        if not self.use_heartbeats:
            return True
        return p.last_heartbeat_at is not None and now_wall - p.last_heartbeat_at <= self.timeout_s


def provider_states(
    providers: Iterable[Provider],
    on_provider: Iterable[JobFields],
    in_flight: Mapping[int, tuple[str, JobFields]],
    liveness: Liveness,
    now_wall: float,
) -> list[ProviderState]:
    """Approved providers with the jobs they hold: from the store, plus placements the oracle
    sent that the store has not seen yet (so a burst is not placed twice on the same room)."""
    held: dict[str, list[RunningJob]] = {}
    for j in on_provider:
        if j.provider:
            held.setdefault(j.provider, []).append(running_job(j))
    for provider, j in in_flight.values():
        held.setdefault(provider, []).append(running_job(j, queued=True))
    return [
        ProviderState(
            provider=p.address,
            cpus=p.cpus,
            gpus=p.gpus,
            mem_mb=p.mem_mb,
            cpu_price=p.cpu_price,
            gpu_price=p.gpu_price,
            gb_price=p.gb_price,
            labels=frozenset(p.labels or ()),
            alive=liveness.alive(p, now_wall),
            jobs=tuple(held.get(p.address, ())),
        )
        for p in providers
    ]
