"""Benchmark of the default placement policy at large scale: one ``decide()`` call per grid size.

Grids of (providers, pending jobs, running jobs) = (50, 5,000, 1,000), (500, 50,000, 10,000)
and (2,000, 200,000, 40,000). Job shapes (processors and requested time) are drawn from an SWF
trace: ../shared/traces/KTH-SP2 when it is there, else the repository's own HPC2N excerpt (the
output says which). Around them: providers of at least 64 CPUs, 2 % to 20 % idle around their
running jobs (a grid with a backlog is a busy grid), prices from 1 to 20 per CPU-minute, one
provider in ten with GPUs and a ``gpu`` label, memory of 1 to 4 GB per CPU, and one job in five
with a max price that rules out the dearer providers.

Times one call per size in CPU time (the input is built first, not timed); with ``--repeat N``
the fastest of N calls (on a shared machine the others wait for a core and for memory). The last
line is one JSON object with ``decide_ms`` per size and ``growth_exponent``: k in
decide_ms ~ pending^k, fitted by least squares on the logarithms of the sizes (providers and
running jobs grow in step with the pending jobs).
Usage: .venv/bin/python scripts/bench_policy.py [--trace FILE] [--sizes 50:5000:1000,...]
       [--seed N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

from metascheduler.placement import (
    DEFAULT_POLICY,
    PendingJob,
    ProviderState,
    RunningJob,
    get_policy,
)
from metascheduler.sim import read_swf

REPO = Path(__file__).resolve().parents[1]
SHARED_TRACE = "shared/traces/KTH-SP2-1996-2.1-cln.swf.gz"
# Where ../shared sits: beside the repository, or beside the folder of worktrees.
SHARED_CANDIDATES = (REPO.parent / SHARED_TRACE, REPO.parents[1] / SHARED_TRACE)
REPO_TRACE = REPO / "tests" / "data" / "traces" / "alea-hpc2n-3171jobs.swf.gz"
SIZES = "50:5000:1000,500:50000:10000,2000:200000:40000"

Shape = tuple[int, float]  # (processors, requested seconds) of one trace job


def default_trace() -> tuple[Path, str]:
    for path in SHARED_CANDIDATES:
        if path.exists():
            return path, "shared"
    return REPO_TRACE, "repository (../shared/traces is absent)"


def build_grid(
    shapes: list[Shape], n_providers: int, n_pending: int, n_running: int, rng: random.Random
) -> tuple[list[PendingJob], list[ProviderState], float]:
    now = 1_000_000.0
    running: list[list[RunningJob]] = [[] for _ in range(n_providers)]
    used = [0] * n_providers
    for job_id in range(n_running):
        procs, est = rng.choice(shapes)
        p = rng.randrange(n_providers)
        started = now - rng.uniform(0, est)
        mem = procs * rng.choice((1024, 2048, 4096))
        running[p].append(RunningJob(10**9 + job_id, procs, 0, mem, started, est))
        used[p] += procs
    providers = []
    for p in range(n_providers):
        # About a tenth idle: holes that backfilling can fill, as on a busy cluster.
        cpus = max(64, -(-int(used[p] * rng.uniform(1.02, 1.2)) // 16) * 16)
        has_gpu = rng.random() < 0.1
        providers.append(
            ProviderState(
                provider=f"0x{p:040x}",
                cpus=cpus,
                gpus=8 if has_gpu else 0,
                mem_mb=max(cpus * 4096, sum(j.mem_mb for j in running[p])),
                cpu_price=rng.randint(1, 20),
                gpu_price=50 if has_gpu else 0,
                gb_price=rng.randint(0, 2),
                labels=frozenset({"gpu"}) if has_gpu else frozenset(),
                alive=rng.random() < 0.98,
                jobs=tuple(running[p]),
            )
        )
    pending = []
    for job_id in range(n_pending):
        procs, est = rng.choice(shapes)
        wants_gpu = rng.random() < 0.05
        pending.append(
            PendingJob(
                job_id=job_id,
                cpus=procs,
                gpus=rng.choice((1, 2, 4)) if wants_gpu else 0,
                mem_mb=procs * rng.choice((1024, 2048, 4096)),
                max_price_per_minute=procs * rng.choice((12, 25)) if rng.random() < 0.2 else 10**12,
                labels=frozenset({"gpu"}) if wants_gpu else frozenset(),
                submitted_at=now - rng.uniform(0, 6 * 3600),
                est_runtime_s=est,
            )
        )
    return pending, providers, now


def growth_exponent(sizes: list[int], ms: list[float]) -> float | None:
    """The slope of log(ms) over log(size), least squares; None with fewer than two sizes."""
    if len(set(sizes)) < 2:
        return None
    xs, ys = [math.log(s) for s in sizes], [math.log(max(m, 1e-3)) for m in ms]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return round(slope, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", help="an SWF trace (default: KTH-SP2 from ../shared/traces)")
    parser.add_argument("--sizes", default=SIZES, help="providers:pending:running,...")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy", default=DEFAULT_POLICY)
    parser.add_argument("--repeat", type=int, default=1, help="calls per size; the fastest counts")
    args = parser.parse_args()
    trace, source = (Path(args.trace), "given") if args.trace else default_trace()
    print(f"trace {trace.name} ({source})")
    shapes = [(j.procs, j.estimate) for j in read_swf(trace) if j.procs <= 1024]
    policy = get_policy(args.policy)
    results: list[dict[str, Any]] = []
    for size in args.sizes.split(","):
        n_prov, n_pend, n_run = (int(x) for x in size.split(":"))
        pending, providers, now = build_grid(
            shapes, n_prov, n_pend, n_run, random.Random(args.seed)
        )
        # CPU time of this process: the figure for one core, whatever else the machine runs.
        ms = wall_ms = math.inf
        for _ in range(max(1, args.repeat)):
            start, wall_start = time.process_time(), time.perf_counter()
            decisions = policy.decide(pending, providers, now)
            ms = min(ms, (time.process_time() - start) * 1000)
            wall_ms = min(wall_ms, (time.perf_counter() - wall_start) * 1000)
        placed, refused = len(decisions.placements), len(decisions.unplaceable)
        print(
            f"{n_prov:>6,} providers {n_pend:>8,} pending {n_run:>7,} running: "
            f"{ms:7.0f} ms CPU ({wall_ms:.0f} wall) "
            f"({placed:,} placed, {refused:,} unplaceable, {n_pend - placed - refused:,} held)"
        )
        results.append(
            {
                "providers": n_prov,
                "pending": n_pend,
                "running": n_run,
                "decide_ms": round(ms, 1),
                "wall_ms": round(wall_ms, 1),
                "placed": placed,
                "unplaceable": refused,
            }
        )
    print(
        json.dumps(
            {
                "policy": args.policy,
                "trace": trace.name,
                "trace_source": source,
                "decide_ms": [r["decide_ms"] for r in results],
                "growth_exponent": growth_exponent(
                    [int(r["pending"]) for r in results], [float(r["decide_ms"]) for r in results]
                ),
                "sizes": results,
            }
        )
    )


if __name__ == "__main__":
    main()
