"""Compute delivered against compute billed: the backends' own records of each run set beside the
bill the chain's events give (read by the audit), never the numbers an agent reports.

Per job that ran once on a backend, `delivered` is the backend's run (start to end) and `billed`
the seconds its cost pays at the job's price.
  - `provider_underpaid`: the rules owe the provider the job's price for every second its backend
    ran while the chain said RUNNING (START to the end's block), up to the escrow, except, for a
    job the oracle failed as silent, the time after the provider's last heartbeat (at most the
    heartbeat timeout, one keep interval and one block). Credits of that compute not paid.
  - `customer_overbilled`: credits billed beyond the delivered run plus what the rules let run on
    after it (a COMPLETE waiting up to `RESULTS_WAIT_S` for the result digest, one agent round,
    and any time the job's agent was down), or billed for a job no backend ran.
  - `free_compute_s`: delivered minus billed, summed. docs/security.md bounds it per job by one
    agent round plus its delay (the backend runs before the START is mined), plus a round and
    the agent's confirmations after a cancel or an expiry, plus the silent provider's loss;
    `free_compute_bound_s` sums that bound with `ROUND_S` for a round and the job's agent's
    downtime for its delay. Jobs over their own bound are counted, with the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from metascheduler.audit.model import JobAudit

#: One agent round and its delay: a 1 s poll, a 1 s block to mine what it sends, and the round's
#: own work, several seconds when the soak's 2 cores run the whole grid at load.
ROUND_S = 10.0
#: How long an agent holds a finished job's COMPLETE for its result digest (billed; the agent
#: setting `results.complete_wait_s`).
RESULTS_WAIT_S = 30.0
#: Seconds of the chain's clock granularity (block timestamps are whole seconds), allowed once
#: per job each way.
CLOCK_S = 1.0
#: The agent's estimate of the chain's clock (`agent.chainview.ClockOffset`) is late by the age of
#: the freshest head it read plus the part of a second its whole-second timestamp dropped: under
#: one block and one second (2 s in the soak), which can come off a short job's bill
#: (docs/security.md, the provider's bound). Job 200 of a 10-minute soak: 6.1 s while RUNNING,
#: billed 3.0 s.
OFFSET_S = 2.0


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
        if a.started_at is not None:
            # Delivered while the chain said RUNNING, less the silent provider's allowance.
            paid_window = _overlap(run.start, run.end, [(float(a.started_at), chain_end)])
            if a.status == "FAILED" and a.exit_code in (None, -1):
                paid_window -= silent_bound_s
            # The chain bills the backend's times in whole seconds, the start rounded up and
            # the end down, and in the agent's estimate of its clock (docs/security.md): up to a
            # second each way and the estimate's lag are the rules', not owed.
            unowed = 2 * CLOCK_S + OFFSET_S
            owed = min(a.escrow, math.floor(price_s * max(0.0, paid_window - unowed)))
            if owed > cost:
                r.provider_underpaid += owed - cost
                r.details.append(
                    f"job {j} ({a.status}) on {run.where}: ran {paid_window:.1f} s while RUNNING "
                    f"on chain, billed {billed:.1f} s: provider owed {owed - cost} more"
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
