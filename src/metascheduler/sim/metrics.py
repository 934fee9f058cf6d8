"""What a replay achieved: waits, bounded slowdowns, utilization and credits, as published
work on these traces reports them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metascheduler.billing import cost

from .engine import SimResult
from .swf import TraceJob

# Bounded slowdown does not let jobs shorter than this count as very slow (the usual 10 s).
BSLD_BOUND_S = 10.0
WIDTHS: tuple[tuple[str, int, int], ...] = (
    ("1", 1, 1),
    ("2-16", 2, 16),
    ("17-64", 17, 64),
    (">64", 65, 2**62),
)
_UNLIMITED_ESCROW = 2**62


def bounded_slowdown(wait: float, run: float) -> float:
    return max(1.0, (wait + run) / max(run, BSLD_BOUND_S))


def summarise(result: SimResult, too_wide: Sequence[TraceJob] = ()) -> dict[str, Any]:
    """The report of one run as a JSON-ready dict.

    ``too_wide`` are the kept jobs left out before the run (wider than the largest cluster);
    jobs the policy itself refused count as unplaceable too.
    """
    outcomes = result.outcomes
    left_out = list(too_wide) + [job for job, _ in result.unplaceable]
    done_work = sum(o.job.procs * o.job.runtime for o in outcomes)
    left_work = sum(j.procs * j.runtime for j in left_out)
    waits = [o.start - o.job.submit for o in outcomes]
    bslds = [bounded_slowdown(w, o.job.runtime) for w, o in zip(waits, outcomes, strict=True)]
    first = min((o.job.submit for o in outcomes), default=0.0)
    last = max((o.end for o in outcomes), default=0.0)
    span = max(last - first, 1e-9)
    per_cluster_work = [0.0] * len(result.clusters)
    credits = 0
    for o in outcomes:
        per_cluster_work[o.cluster] += o.job.procs * o.job.runtime
        credits += cost(
            price=o.price_per_minute, elapsed_s=round(o.job.runtime), escrow=_UNLIMITED_ESCROW
        )
    total_procs = sum(c.procs for c in result.clusters)
    by_width: dict[str, dict[str, float]] = {}
    for label, lo, hi in WIDTHS:
        idx = [i for i, o in enumerate(outcomes) if lo <= o.job.procs <= hi]
        by_width[label] = {
            "jobs": len(idx),
            "avg_wait_s": _mean([waits[i] for i in idx]),
            "avg_bsld": _mean([bslds[i] for i in idx]),
        }
    return {
        "policy": result.policy,
        "clusters": [c.procs for c in result.clusters],
        "jobs": len(outcomes),
        "jobs_kept": len(outcomes) + len(left_out),
        "unplaceable": len(left_out),
        "unplaceable_work_share": left_work / max(done_work + left_work, 1e-9),
        "avg_wait_s": _mean(waits),
        "avg_bsld": _mean(bslds),
        "max_wait_s": max(waits, default=0.0),
        "utilization": done_work / (total_procs * span),
        "per_cluster_utilization": [
            w / (c.procs * span) for w, c in zip(per_cluster_work, result.clusters, strict=True)
        ],
        "credits_paid": credits,
        "by_width": by_width,
        "makespan_s": span,
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
