"""``python -m metascheduler.agent [--config FILE]``: run the provider agent."""

from __future__ import annotations

import argparse

from metascheduler.agent.service import run_agent_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metascheduler.agent",
        description="Run a provider agent: take the jobs placed on this provider, run them on "
        "its backend, report every step on chain.",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="settings file (TOML; see examples/agent-local.toml); MS_* variables override it",
    )
    args = parser.parse_args(argv)
    return run_agent_command(args.config)


if __name__ == "__main__":
    raise SystemExit(main())
