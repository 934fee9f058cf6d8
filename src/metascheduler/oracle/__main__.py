"""`python -m metascheduler.oracle --config oracle.toml`: the oracle without the CLI."""

from __future__ import annotations

import argparse
import sys

from metascheduler.oracle.service import run_oracle_command


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m metascheduler.oracle", description=__doc__)
    ap.add_argument("--config", help="TOML settings file (the environment MS_* overrides it)")
    args = ap.parse_args()
    return run_oracle_command(args.config)


if __name__ == "__main__":
    sys.exit(main())
