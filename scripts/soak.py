#!/usr/bin/env python3
"""Soak the whole local grid under load and faults; the last line is a JSON verdict.

    .venv/bin/python scripts/soak.py                   # 10 minutes, seed 1: 2,100 jobs + burst
    .venv/bin/python scripts/soak.py --minutes 3 --seed 1   # the same rate, a 3,000-job burst

Exit 0 only when no job was lost or run twice, credits are conserved, the audit is clean, the
API and CLI answered bad input without server errors or transactions, no service crashed, no
provider went unpaid and no customer was overbilled for the compute the backends delivered, and
every sampled job's log lines and outputs came back to its customer intact. See
src/metascheduler/devnet/soak/ for what it does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metascheduler.chain.artifacts import REPO_ROOT
from metascheduler.devnet.soak import SoakOptions, run_soak
from metascheduler.devnet.soak.common import JOBS_PER_S


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="load-and-faults time (default 10)")
    p.add_argument("--seed", type=int, default=1, help="seed of the jobs and faults (default 1)")
    p.add_argument("--root", type=Path, default=REPO_ROOT / "var" / "soak", help="work folder")
    p.add_argument("--customers", type=int, default=8, help="customer wallets (at most 10)")
    p.add_argument(
        "--job-interval", type=float, default=20.0, help="mean s between a wallet's jobs"
    )
    p.add_argument(
        "--rate", type=float, default=JOBS_PER_S, help=f"fast-stream jobs/s (default {JOBS_PER_S})"
    )
    p.add_argument(
        "--burst", type=int, default=None, help="spam burst jobs (default 10,000 x minutes/10)"
    )
    p.add_argument(
        "--results-sample",
        type=int,
        default=400,
        help="jobs whose logs and outputs are read back (default 400; 0: all)",
    )
    p.add_argument("--fault-interval", type=float, default=None, help="mean s between faults")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=None,
        help="s to wait for the drain (default 240, or 1.5 x the load time if longer)",
    )
    p.add_argument("--no-slurm", action="store_true", help="no Slurm agent even if Slurm answers")
    a = p.parse_args(argv)
    if not 1 <= a.customers <= 10:
        p.error("--customers must be between 1 and 10")
    opts = SoakOptions(
        minutes=a.minutes,
        seed=a.seed,
        root=a.root,
        customers=a.customers,
        job_interval_s=a.job_interval,
        rate=a.rate,
        burst=a.burst,
        results_sample=a.results_sample or None,
        fault_interval_s=a.fault_interval,
        drain_timeout_s=a.drain_timeout,
        slurm=not a.no_slurm,
    )
    return run_soak(opts)


if __name__ == "__main__":
    sys.exit(main())
