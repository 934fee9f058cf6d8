"""The services behind the command (oracle, agent, API, devnet, simulator): thin wirings to
entry points imported only when asked for, so that `metascheduler --help` answers at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from metascheduler.cli.context import JsonOpt, handled, settings
from metascheduler.cli.errors import UsageError

oracle_app = typer.Typer(help="The oracle (meta-scheduler) service.")
agent_app = typer.Typer(help="A provider's agent service.")
api_app = typer.Typer(help="The read API and dashboard.")
devnet_app = typer.Typer(help="A whole local grid.")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Settings file (TOML); the environment (MS_*) too.")
]


def _service(module: str, function: str, what: str) -> Callable[..., int]:
    """The service's entry point, imported only when asked for."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise UsageError(
                f"{what} is not part of this installation ({module} is missing)"
            ) from None
        raise
    fn: Callable[..., int] = getattr(mod, function)
    return fn


@oracle_app.command("run")
@handled
def oracle_run(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run the oracle: ingest the chain, place jobs, keep them honest."""
    fn = _service("metascheduler.oracle.service", "run_oracle_command", "the oracle")
    raise typer.Exit(fn(config) or 0)


@agent_app.command("run")
@handled
def agent_run(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run a provider's agent over its cluster."""
    fn = _service("metascheduler.agent.service", "run_agent_command", "the agent")
    raise typer.Exit(fn(config) or 0)


@api_app.command("run")
@handled
def api_run(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run the read API and dashboard."""
    fn = _service("metascheduler.api.service", "run_api_command", "the API")
    raise typer.Exit(fn(config) or 0)


@handled
def sim(
    ctx: typer.Context,
    trace: Annotated[str, typer.Argument(help="SWF trace, plain or .gz")],
    clusters: Annotated[
        str, typer.Option("--clusters", help="Processors per cluster, e.g. 50,25,25 or 50@3,25@2")
    ],
    policy: Annotated[
        str | None, typer.Option("--policy", help="A policy, a comma list, or all.")
    ] = None,
    plot: Annotated[str | None, typer.Option("--plot", help="Draw the policies (PNG).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random policy.")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N jobs.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a workload trace on simulated clusters through a placement policy."""
    fn = _service("metascheduler.sim.cli", "run_sim_command", "the simulator")
    as_json = as_json or settings(ctx).json
    raise typer.Exit(fn(trace, clusters, policy, as_json, plot, seed, limit) or 0)


@devnet_app.command("up")
@handled
def devnet_up(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Run the demo, audit, and exit (0 when all is well).")
    ] = False,
) -> None:
    """A whole local grid: chain, contracts, oracle, agents, API and demo jobs."""
    fn = _service("metascheduler.devnet.demo", "run_devnet_command", "the devnet demo")
    raise typer.Exit(fn(once) or 0)
