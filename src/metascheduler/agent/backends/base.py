"""The interface every execution backend offers the provider agent (Slurm, local processes).

Small on purpose, in the manner of Parsl's ``ExecutionProvider`` and submitit's executors: submit a
job, poll many jobs' states in one call, cancel, extend the time limit, find one's jobs again after
a restart, and report capacity for heartbeats. The agent never sees a backend's native states, only
``BackendStatus``; each backend keeps an explicit translation table and reports states it does not
know as ``UNKNOWN`` with the raw state, rather than guessing.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from metascheduler.errors import MetaschedulerError
from metascheduler.spec import JobSpec

JOB_NAME_PREFIX = "ms-"

log = logging.getLogger(__name__)


class BackendStatus(StrEnum):
    QUEUED = "QUEUED"
    """Accepted, waiting for resources (or being set up)."""
    RUNNING = "RUNNING"
    """Holding its resources; metering runs."""
    COMPLETED = "COMPLETED"
    """Ended with exit code 0."""
    FAILED = "FAILED"
    """Ended with a non-zero exit code, or killed by the system (out of memory, node failure)."""
    CANCELLED = "CANCELLED"
    """Killed by a cancel request."""
    TIMEOUT = "TIMEOUT"
    """Killed on reaching its time limit."""
    LOST = "LOST"
    """The backend has no record of the job at all (e.g. purged, or never existed)."""
    UNKNOWN = "UNKNOWN"
    """The backend reported a state we do not translate; see ``BackendJobInfo.raw_state``."""

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        BackendStatus.COMPLETED,
        BackendStatus.FAILED,
        BackendStatus.CANCELLED,
        BackendStatus.TIMEOUT,
        BackendStatus.LOST,
    }
)


def job_name(job_id: int, prefix: str = JOB_NAME_PREFIX) -> str:
    """The backend job name carrying the on-chain id, by which a restarted agent finds its jobs."""
    return f"{prefix}{job_id}"


def parse_job_name(name: str, prefix: str = JOB_NAME_PREFIX) -> int | None:
    """The on-chain job id in a name made by ``job_name``, else None."""
    m = re.fullmatch(re.escape(prefix) + r"(\d{1,78})", name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class BackendJob:
    """One on-chain job to run. ``name`` defaults to ``ms-<job_id>``."""

    job_id: int
    spec: JobSpec
    time_limit_s: int
    name: str = ""
    #: The folder the job writes its output files to (``$MS_OUTPUT_DIR``), which the agent
    #: packs, encrypts and uploads when the job ends; None: the job has none.
    output_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.time_limit_s < 1:
            raise ValueError(
                f"job {self.job_id}: time_limit_s must be >= 1, got {self.time_limit_s}"
            )
        if not self.name:
            object.__setattr__(self, "name", job_name(self.job_id))


@dataclass(frozen=True)
class BackendJobInfo:
    """What a backend knows of one job. Times are Unix seconds, exit code as the shell reports it
    (128 + N for a job killed by signal N)."""

    native_id: str
    status: BackendStatus
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    reason: str | None = None
    raw_state: str | None = None


@dataclass(frozen=True)
class Capacity:
    """Declared and free resources, for heartbeats and the agent's own admission check."""

    total_cpus: int
    free_cpus: int
    total_mem_mb: int
    free_mem_mb: int
    total_gpus: int = 0
    free_gpus: int = 0


@dataclass
class BackendError(MetaschedulerError):
    """A backend operation failed. ``message`` says what failed and what to do; where a command was
    run, ``command``, ``stdout``, ``stderr`` and ``returncode`` hold what it did."""

    kind = "backend"

    message: str
    command: Sequence[str] | None = None
    stdout: str | None = None
    stderr: str | None = None
    returncode: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [self.message]
        if self.command is not None:
            parts.append(f"command: {' '.join(self.command)}")
        if self.returncode is not None:
            parts.append(f"exit code: {self.returncode}")
        if self.stderr and self.stderr.strip():
            parts.append(f"stderr: {self.stderr.strip()}")
        if self.stdout and self.stdout.strip():
            parts.append(f"stdout: {self.stdout.strip()[:2000]}")
        return "\n  ".join(parts)


def unforeseen(job: BackendJob, exc: Exception) -> BackendError:
    """A failure no backend foresaw while preparing one job (a file name the file system
    refuses, say), as that job's refusal in words: contained to the job, never the agent's
    end. The traceback goes to the operator's log, since it shows a check to add."""
    log.error("job %d: unforeseen failure while preparing it", job.job_id, exc_info=exc)
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return BackendError(
        f"job {job.job_id} could not be prepared here ({type(exc).__name__}: {why or 'no message'})"
    )


class Backend(ABC):
    """Runs jobs on one cluster (or one machine) for one provider agent."""

    name: str

    @abstractmethod
    def submit(self, job: BackendJob) -> str:
        """Queue the job; return its native id. Raises ``BackendError`` if refused."""

    def submit_many(self, jobs: Sequence[BackendJob]) -> list[str | BackendError]:
        """Queue each job: its native id, or the ``BackendError`` that refused it, in order.
        A backend that can queue a batch for less than one job at a time overrides this."""
        out: list[str | BackendError] = []
        for job in jobs:
            try:
                out.append(self.submit(job))
            except BackendError as exc:
                out.append(exc)
            except Exception as exc:
                out.append(unforeseen(job, exc))
        return out

    @abstractmethod
    def status(self, native_ids: Sequence[str]) -> dict[str, BackendJobInfo]:
        """The status of each given job, in one round trip; every id gets an entry."""

    @abstractmethod
    def cancel(self, native_id: str) -> None:
        """Kill the job (and its whole process tree). A job already ended is not an error."""

    @abstractmethod
    def extend(self, native_id: str, time_limit_s: int) -> None:
        """Set the job's total time limit (from its submission's start) to ``time_limit_s``."""

    @abstractmethod
    def adopt(self) -> dict[int, str]:
        """On-chain job id -> native id, for jobs this backend still knows: queued, running, or
        ended recently enough that their final status can still be read."""

    @abstractmethod
    def capacity(self) -> Capacity:
        """Total and free resources now."""

    def news(self) -> int:
        """A count that grows whenever one of this backend's jobs ends, for a backend that
        learns it without a status round trip (the local executor sees its children exit).
        The agent starts a round when it grows; a backend that cannot tell keeps 0, and the
        agent then relies on new blocks and its poll."""
        return 0

    def log_paths(self, job_id: int, native_id: str) -> tuple[Path, Path] | None:
        """The files the job's stdout and stderr go to on this machine, which the agent ships as
        the job's log; None when this backend cannot tell."""
        return None
