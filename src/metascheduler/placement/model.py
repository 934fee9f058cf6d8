"""The placement interface: plain data in, decisions out.

The oracle builds these records from chain state, the simulator from its own replay; both hand
them to the same :class:`Policy`. Nothing here does I/O or keeps state between calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PendingJob:
    """A pending job as the oracle sees it."""

    job_id: int
    cpus: int  # total CPUs (tasks * cpus_per_task)
    gpus: int
    mem_mb: int
    max_price_per_minute: int  # credit units per minute
    labels: frozenset[str]  # a provider must carry all of them
    submitted_at: float  # seconds (block timestamp of the request)
    # The user's requested (funded) run time: an upper estimate, often far above the real one.
    est_runtime_s: float
    # Providers that refused this job: it is never offered to them again.
    refused_by: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job already placed on a provider, queued there or running."""

    job_id: int
    cpus: int
    gpus: int
    mem_mb: int
    started_at: float | None  # None while queued at the provider (placed, not yet running)
    est_runtime_s: float


@dataclass(frozen=True, slots=True)
class ProviderState:
    provider: str  # address (0x...)
    cpus: int  # declared capacity
    gpus: int
    mem_mb: int
    cpu_price: int  # per-minute prices, credit units
    gpu_price: int
    gb_price: int
    labels: frozenset[str]
    alive: bool  # heartbeats fresh (or no heartbeat system): a dead provider gets nothing
    jobs: tuple[RunningJob, ...]


@dataclass(frozen=True, slots=True)
class Placement:
    job_id: int
    provider: str
    price_per_minute: int


@dataclass(frozen=True, slots=True)
class Unplaceable:
    """No approved provider could ever run the job (too wide, labels, max price)."""

    job_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Decisions:
    """Jobs in neither list are held: they wait in the meta-scheduler's own queue."""

    placements: list[Placement]
    unplaceable: list[Unplaceable]


class Policy(Protocol):
    name: str

    def decide(
        self, pending: Sequence[PendingJob], providers: Sequence[ProviderState], now: float
    ) -> Decisions: ...
