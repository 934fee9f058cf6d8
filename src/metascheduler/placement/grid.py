"""The grid as one ``decide()`` call sees it: provider views, and which of them suit each job."""

from __future__ import annotations

from collections.abc import Sequence

from .eligibility import could_run, unplaceable_reason
from .model import JobRequest, ProviderState
from .view import ProviderView

# Jobs of the same shape have the same suitable providers: thousands of pending jobs come in a
# few dozen shapes, so the check runs once per shape, not once per job and provider.
_Shape = tuple[int, int, int, int, frozenset[str]]


class Grid:
    def __init__(self, providers: Sequence[ProviderState], now: float) -> None:
        self.now = now
        self.providers = providers
        self.views = [ProviderView(p, i, now) for i, p in enumerate(providers)]
        self._suitable: dict[_Shape, list[ProviderView] | str] = {}

    def suitable(self, job: JobRequest) -> list[ProviderView] | str:
        """The alive providers that could run the job, or why no provider ever could.

        An empty list means the job is held: some provider could run it but none is alive.
        """
        shape = (job.cpus, job.gpus, job.mem_mb, job.max_price_per_minute, job.labels)
        found = self._suitable.get(shape)
        if found is None:
            reason = unplaceable_reason(job, self.providers)
            if reason is not None:
                found = reason
            else:
                found = [v for v in self.views if v.state.alive and could_run(job, v.state)]
            self._suitable[shape] = found
        if job.refused_by and not isinstance(found, str) and found:
            left = [v for v in found if v.provider.lower() not in job.refused_by]
            if not left:
                return f"refused by every provider able to run it ({len(found)})"
            return left
        return found

    def max_free_cpus(self) -> int:
        return max((v.free_cpus for v in self.views if v.state.alive), default=0)


def fcfs_order(pending: Sequence[JobRequest]) -> list[JobRequest]:
    """First come, first served; the job id breaks ties so every caller sees the same order."""
    return sorted(pending, key=lambda j: (j.submitted_at, j.job_id))
