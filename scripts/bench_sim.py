"""Benchmark of the simulator: KTH-SP2 replayed on clusters [50, 25, 25] with the default policy.

Prints jobs simulated per second of wall time; the last line is one JSON object.
Usage: .venv/bin/python scripts/bench_sim.py [TRACE] [--clusters 50,25,25] [--policy NAME]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from metascheduler.placement import DEFAULT_POLICY
from metascheduler.sim import parse_clusters, read_swf, run

KTH = Path(__file__).resolve().parents[2] / "shared" / "traces" / "KTH-SP2-1996-2.1-cln.swf.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", default=str(KTH))
    parser.add_argument("--clusters", default="50,25,25")
    parser.add_argument("--policy", default=DEFAULT_POLICY)
    args = parser.parse_args()
    jobs = read_swf(args.trace)  # parsing is not part of the figure: the replay is
    start = time.perf_counter()
    summary = run(jobs, parse_clusters(args.clusters), args.policy)
    seconds = time.perf_counter() - start
    simulated = summary["jobs"]
    print(f"{simulated} jobs replayed in {seconds:.2f} s: {simulated / seconds:,.0f} jobs/s")
    print(
        json.dumps(
            {
                "trace": Path(args.trace).name,
                "clusters": args.clusters,
                "policy": args.policy,
                "jobs": simulated,
                "seconds": round(seconds, 3),
                "jobs_per_s": round(simulated / seconds, 1),
                "avg_bsld": summary["avg_bsld"],
                "avg_wait_s": summary["avg_wait_s"],
                "utilization": summary["utilization"],
            }
        )
    )


if __name__ == "__main__":
    main()
