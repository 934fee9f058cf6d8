"""Keys and connections: the wallet a command signs with, and the SDK client it drives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from metascheduler.cli.context import DEFAULT_KEYSTORE, Settings, settings
from metascheduler.cli.errors import UsageError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from metascheduler.client import Client


def env_value(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise UsageError(f"environment variable {name} (named for the {what}) is not set or empty")
    return value


def password(s: Settings, *, confirm: bool) -> str:
    if s.password_env:
        return env_value(s.password_env, "keystore password")
    pw: str = typer.prompt(
        "Keystore password", hide_input=True, confirmation_prompt=confirm, err=True
    )
    return pw


def keystore_path(s: Settings) -> Path:
    return s.keystore or DEFAULT_KEYSTORE


def account(s: Settings) -> LocalAccount | None:
    """The wallet the settings name, or None when none is named and the default is absent."""
    from metascheduler.keys import account_from_secret, load_keystore

    if s.key_env:
        return account_from_secret(env_value(s.key_env, "private key"))
    path = keystore_path(s)
    if s.keystore is None and not path.exists():
        return None
    return load_keystore(path, password(s, confirm=False))


def chain_id(rpc_url: str) -> int:
    """The chain id the endpoint answers (RpcUnavailable, exit 3, when it does not)."""
    from metascheduler.chain.rpc import connect, retrying

    w3 = connect(rpc_url)
    return int(retrying("reading the chain id", lambda: w3.eth.chain_id, deadline_s=3.0))


def market(s: Settings) -> tuple[str, int | None]:
    """The market's address and deployment block: from --deployment (checked against the
    endpoint's chain), or from --market and --from-block."""
    from metascheduler.chain.deployment import load_deployment

    if s.deployment is None:
        if not s.market:
            raise UsageError(
                "no market address: give --deployment (the file `metascheduler deploy` wrote), "
                "--market, or set MS_DEPLOYMENT or MS_MARKET_ADDRESS"
            )
        return s.market, s.from_block
    dep = load_deployment(s.deployment)
    if s.market and s.market.lower() != dep.market.lower():
        raise UsageError(
            f"--market {s.market} (or MS_MARKET_ADDRESS) differs from the market {dep.market} in "
            f"the deployment file {s.deployment}: give one or the other"
        )
    dep.check_chain(chain_id(s.rpc_url), f"file {s.deployment}")
    return dep.market, dep.block if s.from_block is None else s.from_block


def client(ctx: typer.Context, *, wallet: bool = True) -> Client:
    """The SDK client for the market the root options name, with the wallet unless told not."""
    from metascheduler.client import Client
    from metascheduler.keys import refuse_dev_key_off_devnet

    s = settings(ctx)
    address, from_block = market(s)
    acct = account(s) if wallet else None
    if wallet and acct is None:
        raise UsageError(
            f"this needs a wallet and none was found at {DEFAULT_KEYSTORE}: create one "
            "(`metascheduler wallet create`), or give --keystore or --key-env"
        )
    c = Client.connect(s.rpc_url, address, acct, from_block=from_block, api_url=s.api_url)
    if acct is not None:
        refuse_dev_key_off_devnet(acct, c.chain_id())
    return c
