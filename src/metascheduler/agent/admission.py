"""Whether the agent takes a job placed on it, and for how long it may run.

A job is refused (``refuseJob``, back to PENDING for another provider) with a reason in words
when its spec is invalid, does not match the resources the customer paid for, asks for labels
this provider lacks, is larger than what the provider declared, or its escrow pays less than the
provider's minimum run (its ACCEPT, START and COMPLETE would cost more gas than it pays).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metascheduler import billing
from metascheduler.agent.chainview import JobRequest
from metascheduler.chain.types import Hardware, JobView, Terms
from metascheduler.spec import JobSpec, SpecError, decode_spec

#: Longest refusal reason sent on chain (it is paid for in gas, and read by humans).
MAX_REFUSAL_REASON = 240


@dataclass(frozen=True)
class Refusal:
    reason: str

    def __post_init__(self) -> None:
        if len(self.reason) > MAX_REFUSAL_REASON:
            object.__setattr__(self, "reason", self.reason[: MAX_REFUSAL_REASON - 3] + "...")


def admit(
    req: JobRequest,
    view: JobView,
    hardware: Hardware,
    labels: Sequence[str],
    min_run_s: int = 0,
) -> JobSpec | Refusal:
    """The job's spec if this provider can run it, else why not."""
    terms = Terms.for_spec(req.spec, req.cpus, req.gpus, req.mem_mb, req.max_price_per_minute)
    if terms.tag() != view.terms_tag:
        # The event we read is not the one the job was recorded under: never run it.
        return Refusal(f"the request event read for job {req.job_id} does not match its terms")
    try:
        spec = decode_spec(req.spec, source=f"job {req.job_id}")
    except SpecError as exc:
        return Refusal("invalid job spec: " + "; ".join(exc.messages))
    paid = (req.cpus, req.gpus, req.mem_mb)
    asked = (spec.cpus, spec.gpus, spec.mem_mb)
    if paid != asked:
        return Refusal(
            f"the spec asks for {spec.cpus} CPUs, {spec.gpus} GPUs, {spec.mem_mb} MB but the "
            f"request pays for {req.cpus} CPUs, {req.gpus} GPUs, {req.mem_mb} MB"
        )
    missing = sorted(set(spec.required_labels) - set(labels))
    if missing:
        have = ", ".join(labels) or "none"
        return Refusal(f"needs labels this provider lacks: {', '.join(missing)} (it has: {have})")
    if spec.cpus > hardware.cpus or spec.gpus > hardware.gpus or spec.mem_mb > hardware.mem_mb:
        return Refusal(
            f"too big: asks for {spec.cpus} CPUs, {spec.gpus} GPUs, {spec.mem_mb} MB; this "
            f"provider has {hardware.cpus} CPUs, {hardware.gpus} GPUs, {hardware.mem_mb} MB"
        )
    funded = billing.funded_seconds(escrow=view.escrow, price=view.price_per_minute)
    if funded < min_run_s:
        return Refusal(
            f"its escrow of {view.escrow} units pays {funded} s at {view.price_per_minute} "
            f"units/min, less than this provider's minimum run of {min_run_s} s: top it up"
        )
    return spec


def time_limit_s(
    *, escrow: int, price_per_minute: int, grace_s: int, lag_s: int, cap_s: int
) -> int:
    """The backend time limit for a job: what its escrow pays for at its price, plus a grace
    and the lag of the chain's start behind the backend's, capped."""
    funded = billing.funded_seconds(escrow=escrow, price=price_per_minute)
    return max(1, min(cap_s, funded + grace_s + lag_s))
