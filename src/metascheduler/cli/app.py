"""The root command: its global options, and one sub-command per group module.

A new group is a module with its own `typer.Typer` named `app`, added to the list below.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from metascheduler import logs
from metascheduler.cli import admin, audit, credits, deploy, job, provider, services, wallet
from metascheduler.cli.context import (
    DEFAULT_API,
    DEFAULT_KEYSTORE,
    DEFAULT_RPC,
    JsonOpt,
    Settings,
)

app = typer.Typer(
    name="metascheduler",
    help="An open meta-scheduler for a grid of HPC providers paid in on-chain credits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _sub, _name in [
    (wallet.app, "wallet"),
    (credits.app, "credits"),
    (job.app, "job"),
    (provider.app, "provider"),
    (audit.app, "audit"),
    (admin.app, "admin"),
    (services.oracle_app, "oracle"),
    (services.agent_app, "agent"),
    (services.api_app, "api"),
    (services.devnet_app, "devnet"),
]:
    app.add_typer(_sub, name=_name, no_args_is_help=True)
app.command("sim")(services.sim)
app.command("deploy")(deploy.deploy)


@app.callback()
def _global(
    ctx: typer.Context,
    rpc_url: Annotated[
        str, typer.Option("--rpc-url", envvar="MS_RPC_URL", help="JSON-RPC endpoint.")
    ] = DEFAULT_RPC,
    market: Annotated[
        str | None,
        typer.Option("--market", envvar="MS_MARKET_ADDRESS", help="The JobMarket's address."),
    ] = None,
    keystore: Annotated[
        Path | None,
        typer.Option(
            "--keystore", envvar="MS_KEYSTORE", help=f"Keystore file [default: {DEFAULT_KEYSTORE}]"
        ),
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env",
            envvar="MS_PASSWORD_ENV",
            help="NAME of an environment variable holding the keystore password (else a prompt).",
        ),
    ] = None,
    key_env: Annotated[
        str | None,
        typer.Option(
            "--key-env",
            envvar="MS_KEY_ENV",
            help="NAME of an environment variable holding a raw private key (instead of a "
            "keystore). Never put a key itself on the command line.",
        ),
    ] = None,
    from_block: Annotated[
        int | None,
        typer.Option(
            "--from-block",
            envvar="MS_FROM_BLOCK",
            help="The market's deployment block (found by bisection if not given).",
            min=0,
        ),
    ] = None,
    deployment: Annotated[
        Path | None,
        typer.Option(
            "--deployment",
            envvar="MS_DEPLOYMENT",
            help="The file `metascheduler deploy` wrote: the market's address, deployment block "
            "and chain (in place of --market and --from-block).",
        ),
    ] = None,
    api_url: Annotated[
        str,
        typer.Option(
            "--api-url", envvar="MS_API_URL", help="The grid's API (job logs and outputs)."
        ),
    ] = DEFAULT_API,
    as_json: JsonOpt = False,
) -> None:
    logs.setup(logging.WARNING)
    ctx.obj = Settings(
        rpc_url, market, keystore, password_env, key_env, from_block, as_json, deployment, api_url
    )


def main() -> None:
    app()
