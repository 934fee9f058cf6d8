"""One or several policies replayed on one trace and one split: what the ``sim`` command runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metascheduler.placement import DEFAULT_POLICY, POLICY_NAMES, get_policy

from .engine import ClusterSpec, simulate, simulate_merged
from .metrics import summarise
from .swf import TraceJob

MERGED = "merged"  # the reference run: one EASY cluster with every processor (not a policy)
ALL_RUNS: tuple[str, ...] = (*POLICY_NAMES, MERGED)


def parse_clusters(text: str) -> list[ClusterSpec]:
    """``"50,25,25"``, or with per processor-minute prices in credit units ``"50@3,25@2,25"``."""
    specs = []
    for part in text.split(","):
        procs, _, price = part.strip().partition("@")
        spec = ClusterSpec(int(procs), int(price) if price else 0)
        if spec.procs <= 0 or spec.cpu_price < 0:
            raise ValueError(f"bad cluster {part!r}: want PROCS or PROCS@PRICE, both positive")
        specs.append(spec)
    if not specs:
        raise ValueError("no clusters")
    return specs


def parse_policies(text: str | None) -> list[str]:
    """``None`` is the default policy; ``"all"`` every policy and the merged ideal."""
    if text is None:
        return [DEFAULT_POLICY]
    if text == "all":
        return list(ALL_RUNS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_RUNS]
    if unknown or not names:
        raise ValueError(f"unknown policy {unknown}; known: {', '.join(ALL_RUNS)}, all")
    return names


def run(
    jobs: Sequence[TraceJob], clusters: Sequence[ClusterSpec], name: str, seed: int = 0
) -> dict[str, Any]:
    """Replay the kept ``jobs`` with one policy and summarise the run.

    Jobs wider than the largest cluster are left out of every run (the merged one too, so that
    all runs serve the same jobs) and reported as unplaceable.
    """
    widest = max(c.procs for c in clusters)
    fits = [job for job in jobs if job.procs <= widest]
    too_wide = [job for job in jobs if job.procs > widest]
    if name == MERGED:
        result = simulate_merged(fits, clusters)
    else:
        result = simulate(fits, clusters, get_policy(name, seed=seed))
    return summarise(result, too_wide)
