"""`metascheduler wallet`: create, import and show the wallet (an encrypted keystore)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from metascheduler.cli import connect
from metascheduler.cli.context import DEFAULT_KEYSTORE, JsonOpt, Settings, handled, out, settings
from metascheduler.cli.errors import UsageError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

app = typer.Typer(help="Create, import and show your wallet (an encrypted keystore).")


def _new_keystore_path(s: Settings) -> Path:
    """The keystore path to write, refusing to overwrite an existing wallet."""
    path = connect.keystore_path(s)
    if path.exists():
        raise UsageError(
            f"keystore {path} exists; refusing to overwrite it: give another --keystore"
        )
    return path


def _save(
    ctx: typer.Context, as_json: bool, make: Callable[[Settings], LocalAccount], done: str
) -> None:
    """Saves the account ``make`` gives, encrypted, in a keystore that did not exist; ``done``
    says what happened, with the address and the path in its two ``{}``."""
    from metascheduler.keys import save_keystore

    s = settings(ctx)
    path = _new_keystore_path(s)
    acct = make(s)
    save_keystore(acct, path, connect.password(s, confirm=True))
    line = done.format(f"[bold]{acct.address}[/]", path)
    out(ctx, as_json).emit(
        {"ok": True, "address": acct.address, "keystore": str(path)}, lambda c: c.print(line)
    )


@app.command("create")
@handled
def wallet_create(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create a new key, saved encrypted in the keystore."""
    from eth_account import Account

    _save(ctx, as_json, lambda s: Account.create(), "created wallet {} in {}")


@app.command("import")
@handled
def wallet_import(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Encrypt an existing private key into the keystore (the key from --key-env, or a hidden
    prompt)."""
    from metascheduler.keys import account_from_secret

    def key(s: Settings) -> LocalAccount:
        if s.key_env:
            secret = connect.env_value(s.key_env, "private key")
        else:
            secret = typer.prompt("Private key (hex, hidden)", hide_input=True, err=True)
        return account_from_secret(secret)

    _save(ctx, as_json, key, "imported wallet {} into {}")


@app.command("address")
@handled
def wallet_address(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the wallet's address."""
    acct = connect.account(settings(ctx))
    if acct is None:
        raise UsageError(f"no keystore at {DEFAULT_KEYSTORE}: `metascheduler wallet create`")
    out(ctx, as_json).emit({"ok": True, "address": acct.address}, lambda c: c.print(acct.address))
