"""``python -m metascheduler.sim TRACE --clusters 50,25,25 [--policy NAME] [--json] ...``"""

from __future__ import annotations

import argparse

from .cli import run_sim_command
from .runner import ALL_RUNS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metascheduler.sim",
        description="Replay an SWF trace on a grid of EASY clusters through a placement policy.",
    )
    parser.add_argument("trace", help="SWF trace, plain or .gz")
    parser.add_argument(
        "--clusters", required=True, help="processors per cluster, e.g. 50,25,25 or 50@3,25@2"
    )
    parser.add_argument(
        "--policy", default=None, help=f"one of {', '.join(ALL_RUNS)}, a comma list, or all"
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--plot", default=None, help="draw the policies side by side (PNG)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N jobs")
    args = parser.parse_args(argv)
    return run_sim_command(
        args.trace, args.clusters, args.policy, args.json, args.plot, args.seed, args.limit
    )


if __name__ == "__main__":
    raise SystemExit(main())
