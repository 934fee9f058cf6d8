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
        return "no approved provider"
    labelled = [p for p in providers if job.labels <= p.labels]
    if not labelled:
        return f"no provider has all the labels {sorted(job.labels)}"
    big_enough = [
        p for p in labelled if job.cpus <= p.cpus and job.gpus <= p.gpus and job.mem_mb <= p.mem_mb
    ]
    if not big_enough:
        largest = max(labelled, key=lambda p: (p.cpus, p.gpus, p.mem_mb))
        return (
            f"too large: needs {job.cpus} CPUs, {job.gpus} GPUs, {job.mem_mb} MB; the largest "
            f"suitable provider has {largest.cpus} CPUs, {largest.gpus} GPUs, {largest.mem_mb} MB"
        )
    cheapest = min(job_price(job, p) for p in big_enough)
    if cheapest > job.max_price_per_minute:
        return (
            f"max price {job.max_price_per_minute}/min is below the cheapest suitable "
            f"provider's price {cheapest}/min"
        )
    return None
