"""The simulator: real workload traces replayed through the placement policies on a grid of
EASY-backfilling clusters, so that a policy's effect on waits and utilization is measurable."""

from .engine import ClusterSpec, Outcome, SimResult, simulate, simulate_merged
from .metrics import bounded_slowdown, summarise
from .runner import parse_clusters, parse_policies, run
from .swf import TraceError, TraceJob, read_swf

__all__ = [
    "ClusterSpec",
    "Outcome",
    "SimResult",
    "TraceError",
    "TraceJob",
    "bounded_slowdown",
    "parse_clusters",
    "parse_policies",
    "read_swf",
    "run",
    "simulate",
    "simulate_merged",
    "summarise",
]
