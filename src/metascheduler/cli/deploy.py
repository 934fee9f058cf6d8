"""`metascheduler deploy`: a Credit token and a JobMarket on any EVM chain, and the deployment
file every service and command then reads (`--deployment FILE`, or MS_DEPLOYMENT)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from metascheduler import billing
from metascheduler.cli import connect, inputs
from metascheduler.cli.context import JsonOpt, handled, out, settings
from metascheduler.cli.errors import UsageError
from metascheduler.cli.output import as_credits

DEFAULT_OUT = Path("deployment.json")
#: What each request pays, not refunded: a fresh market without it lets a flood of requests
#: cost its sender nothing but gas (100,000 requests at 0.01 credit cost 1,000 credits).
DEFAULT_REQUEST_FEE = "0.01"
#: The contract keeps the request fee in 24 bits.
MAX_REQUEST_FEE_UNITS = 2**24 - 1


@handled
def deploy(
    ctx: typer.Context,
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="JSON-RPC endpoint of the chain.")
    ] = None,
    keystore: Annotated[
        Path | None, typer.Option("--keystore", help="The deployer's keystore file.")
    ] = None,
    key_env: Annotated[
        str | None,
        typer.Option(
            "--key-env", help="NAME of an environment variable holding the deployer's raw key."
        ),
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env", help="NAME of an environment variable holding the keystore password."
        ),
    ] = None,
    oracle: Annotated[
        str | None, typer.Option("--oracle", help="The oracle's address (default: the deployer).")
    ] = None,
    fee_bps: Annotated[
        int,
        typer.Option(
            "--fee-bps",
            help="Platform fee taken from providers' earnings, in basis points.",
            min=0,
            max=billing.MAX_FEE_BPS,
        ),
    ] = 0,
    request_fee: Annotated[
        str,
        typer.Option(
            "--request-fee",
            help="Credits each job request pays to the platform, not refunded even on cancel "
            "(what spam costs its sender; 0 for none).",
        ),
    ] = DEFAULT_REQUEST_FEE,
    accept_timeout: Annotated[
        int,
        typer.Option(
            "--accept-timeout", help="Seconds a provider has to accept a placement.", min=1
        ),
    ] = 120,
    start_timeout: Annotated[
        int,
        typer.Option("--start-timeout", help="Seconds a queued job may wait to start.", min=1),
    ] = 3600,
    out_file: Annotated[
        Path, typer.Option("--out", help="The deployment file to write (never overwritten).")
    ] = DEFAULT_OUT,
    as_json: JsonOpt = False,
) -> None:
    """Deploy Credit and JobMarket (the deployer holds the admin and minter roles) and write a
    deployment file: chain id, addresses, deployment block and the contracts' code hashes."""
    from metascheduler.chain.deploy import deploy_contracts
    from metascheduler.chain.deployment import write_deployment
    from metascheduler.chain.rpc import connect as connect_rpc
    from metascheduler.keys import refuse_dev_key_off_devnet

    if keystore is not None and key_env is not None:
        raise UsageError("give --keystore or --key-env, not both")
    s = settings(ctx)
    if keystore is not None or key_env is not None:
        # A key named here replaces whichever the root options or the environment named.
        s = dataclasses.replace(s, keystore=keystore, key_env=key_env)
    s = dataclasses.replace(
        s, rpc_url=rpc_url or s.rpc_url, password_env=password_env or s.password_env
    )
    oracle = inputs.optional_address(oracle, "--oracle")
    request_fee_units = inputs.credit_units(request_fee, "--request-fee", allow_zero=True)
    if request_fee_units > MAX_REQUEST_FEE_UNITS:
        raise UsageError(
            f"--request-fee {request_fee} is above the contract's limit of "
            f"{as_credits(MAX_REQUEST_FEE_UNITS)} credits: give a smaller fee"
        )
    if out_file.exists():
        raise UsageError(
            f"deployment file {out_file} exists; refusing to overwrite another deployment's "
            "record: give another --out"
        )
    acct = connect.account(s)
    if acct is None:
        raise UsageError("deploying needs the deployer's key: give --keystore or --key-env")
    chain_id = connect.chain_id(s.rpc_url)
    refuse_dev_key_off_devnet(acct, chain_id)
    dep = deploy_contracts(
        connect_rpc(s.rpc_url),
        acct,
        oracle=oracle or acct.address,
        accept_timeout_s=accept_timeout,
        start_timeout_s=start_timeout,
        fee_bps=fee_bps,
        request_fee=request_fee_units,
    )
    write_deployment(dep, out_file)
    out(ctx, as_json).emit(
        {
            "ok": True,
            **dep.to_json(),
            "fee_bps": fee_bps,
            "request_fee": request_fee_units,
            "file": str(out_file),
        },
        lambda c: c.print(
            f"deployed JobMarket [bold]{dep.market}[/] and Credit {dep.credit} on chain "
            f"{dep.chain_id} at block {dep.block}; admin and minter {dep.admin}, oracle "
            f"{dep.oracle}, fee {fee_bps} bps, request fee {as_credits(request_fee_units)} "
            f"credits.\nwrote {out_file}: use it with "
            f"`metascheduler --deployment {out_file} ...` or MS_DEPLOYMENT={out_file}"
        ),
    )
