"""Which providers could ever run a job, and in words why none could.

"Ever" means on an empty provider: declared capacity, labels and price, whether or not the
provider is alive right now (a silent provider may come back; its jobs are held, not refused).
"""

from __future__ import annotations

from collections.abc import Sequence

from metascheduler.billing import price_per_minute

from .model import PendingJob, ProviderState


def job_price(job: PendingJob, provider: ProviderState) -> int:
    """Credit units per minute this provider charges for this job (the contract's arithmetic)."""
    return price_per_minute(
        job.cpus,
        job.gpus,
        job.mem_mb,
        provider.cpu_price,
        provider.gpu_price,
        provider.gb_price,
    )


def could_run(job: PendingJob, provider: ProviderState) -> bool:
    return (
        job.labels <= provider.labels
        and job.cpus <= provider.cpus
        and job.gpus <= provider.gpus
        and job.mem_mb <= provider.mem_mb
        and job_price(job, provider) <= job.max_price_per_minute
    )


def unplaceable_reason(job: PendingJob, providers: Sequence[ProviderState]) -> str | None:
    """None if some provider could ever run the job, else the first constraint that rules all out.

    The checks run in the order a user fixes them: labels, then size, then price.
    """
    if not providers:
        return NO_PROVIDER
    labelled = [p for p in providers if job.labels <= p.labels]
    if not labelled:
        return missing_labels(job)
    big_enough = [
        p for p in labelled if job.cpus <= p.cpus and job.gpus <= p.gpus and job.mem_mb <= p.mem_mb
    ]
    if not big_enough:
        largest = max(labelled, key=lambda p: (p.cpus, p.gpus, p.mem_mb))
        return too_large(job, largest.cpus, largest.gpus, largest.mem_mb)
    cheapest = min(job_price(job, p) for p in big_enough)
    if cheapest > job.max_price_per_minute:
        return too_dear(job, cheapest)
    return None


# The reasons in words (the array form of the check in ``grid.py`` gives the same).
NO_PROVIDER = "no approved provider"


def missing_labels(job: PendingJob) -> str:
    return f"no provider has all the labels {sorted(job.labels)}"


def too_large(job: PendingJob, cpus: int, gpus: int, mem_mb: int) -> str:
    """``cpus``, ``gpus``, ``mem_mb``: the largest provider that carries the job's labels."""
    return (
        f"too large: needs {job.cpus} CPUs, {job.gpus} GPUs, {job.mem_mb} MB; the largest "
        f"suitable provider has {cpus} CPUs, {gpus} GPUs, {mem_mb} MB"
    )


def too_dear(job: PendingJob, cheapest: int) -> str:
    return (
        f"max price {job.max_price_per_minute}/min is below the cheapest suitable "
        f"provider's price {cheapest}/min"
    )
