"""Compute delivered against compute billed: the backends' own records of each run set beside the
bill the chain's events give (read by the audit), never the numbers an agent reports.

Per job that ran once on a backend, `delivered` is the backend's run (start to end) and `billed`
the seconds its cost pays at the job's price. The rules (docs/security.md) let some delivered
compute go unbilled, each within a bound, and bill some time after the run's end:
  - the start: the backend runs the job before the agent's START is mined (one agent round plus
    its delay), `ROUND_S` here plus any time the job's agent was down meanwhile;
  - a silent provider (failed by the oracle): paid up to its last heartbeat, so it loses at most
    the heartbeat timeout, one keep interval and one block;
  - a cancel or an expiry: the backend runs until the agent's next round kills it;
  - the end: a COMPLETE waits up to `RESULTS_WAIT_S` for the result digest, billed.
`free_compute_s` sums delivered minus billed; `provider_underpaid` the credits of compute beyond
those bounds that no bill paid; `customer_overbilled` the credits billed beyond the delivered run,
the end's bounds and its agent's downtime, or above the job's price cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from metascheduler.audit.model import JobAudit

#: One agent round (1 s poll) and the block that mines its START (1 s blocks), with a round's
#: worth of slack for a loaded machine: what the timing rule leaves unbilled at a job's start.
ROUND_S = 4.0
#: How long an agent holds a finished job's COMPLETE for its result digest (billed; the agent
#: setting `results.complete_wait_s`).
RESULTS_WAIT_S = 30.0
#: Seconds of the chain's clock granularity (block timestamps are whole seconds), allowed once
#: per job each way.
CLOCK_S = 1.0


@dataclass(frozen=True)
class Run:
    where: str
    start: float
    end: float


@dataclass
class ComputeReport:
    provider_underpaid: int = 0
    customer_overbilled: int = 0
    free_compute_s: float = 0.0
    free_compute_bound_s: float = 0.0
    free_compute_max_job_s: float = 0.0
    #: jobs whose unbilled compute is beyond their bound
    free_compute_over_bound: int = 0
    delivered_s: float = 0.0
    billed_s: float = 0.0
    details: list[str] = field(default_factory=list)


def _overlap(a: float, b: float, windows: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, y) - max(a, x)) for x, y in windows)


def compare(
    audits: dict[int, JobAudit],
    runs: dict[int, list[Run]],
    downtime: dict[str, list[tuple[float, float]]],
    silent_bound_s: float,
    confirmations_s: float,
) -> ComputeReport:
    """`downtime`: service name -> windows (wall-clock Unix seconds) it was down;
    `confirmations_s`: how long an agent waits before it acts on what the chain says (a cancel,
    an expiry)."""
    r = ComputeReport()
    for j, a in sorted(audits.items()):
        cost = a.actual.cost if a.actual else 0
        ran = runs.get(j, [])
        if not ran:
            # Never ran on a backend: nothing delivered, so nothing may be billed.
            if cost:
                r.customer_overbilled += cost
                r.details.append(f"job {j} billed {cost} units, never ran on a backend")
            continue
        if len(ran) > 1 or not a.price_per_minute:
            continue  # run twice: counted as doubled; or never placed at a price
        run = ran[0]
        delivered = max(0.0, run.end - run.start)
        price_s = a.price_per_minute / 60
        billed = cost / price_s
        agent = run.where.split(":", 1)[0]
        chain_end = float(a.ended_at) if a.ended_at is not None else run.end
        down = _overlap(run.start, max(run.end, chain_end), downtime.get(agent, []))
        bound = ROUND_S + down + CLOCK_S
        if a.status == "FAILED" and a.exit_code in (None, -1):
            bound += silent_bound_s
        if a.status in ("CANCELLED", "OUT_OF_CREDITS"):
            bound += ROUND_S + confirmations_s
        free = max(0.0, delivered - billed)
        r.delivered_s += delivered
        r.billed_s += billed
        r.free_compute_s += free
        r.free_compute_bound_s += bound
        r.free_compute_max_job_s = max(r.free_compute_max_job_s, free)
        if free > bound:
            r.free_compute_over_bound += 1
            r.details.append(
                f"job {j} ({a.status}) on {run.where}: {free:.1f} s unbilled, over its bound "
                f"of {bound:.1f} s (delivered {delivered:.1f} s, billed {billed:.1f} s)"
            )
        owed = min(a.escrow, math.floor(price_s * max(0.0, delivered - bound)))
        if owed > cost:
            r.provider_underpaid += owed - cost
            r.details.append(
                f"job {j} ({a.status}) on {run.where}: delivered {delivered:.1f} s, billed "
                f"{billed:.1f} s, unbilled bound {bound:.1f} s: provider owed {owed - cost} more"
            )
        allowed = min(a.escrow, math.ceil(price_s * (delivered + RESULTS_WAIT_S + bound)))
        if cost > allowed:
            r.customer_overbilled += cost - allowed
            r.details.append(
                f"job {j} ({a.status}) on {run.where}: delivered {delivered:.1f} s, billed "
                f"{billed:.1f} s: customer overbilled {cost - allowed}"
            )
        if a.price_per_minute > a.max_price_per_minute:
            r.customer_overbilled += cost
            r.details.append(f"job {j} priced {a.price_per_minute} above its cap")
    r.free_compute_s = round(r.free_compute_s, 1)
    r.free_compute_bound_s = round(r.free_compute_bound_s, 1)
    r.free_compute_max_job_s = round(r.free_compute_max_job_s, 1)
    r.delivered_s = round(r.delivered_s, 1)
    r.billed_s = round(r.billed_s, 1)
    return r
