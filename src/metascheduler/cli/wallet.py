"""`metascheduler wallet`: create, import and show the wallet (an encrypted keystore)."""

from __future__ import annotations

from pathlib import Path

import typer

from metascheduler.cli import connect
from metascheduler.cli.context import DEFAULT_KEYSTORE, JsonOpt, Settings, handled, out, settings
from metascheduler.cli.errors import UsageError

app = typer.Typer(help="Create, import and show your wallet (an encrypted keystore).")


def _new_keystore_path(s: Settings) -> Path:
    """The keystore path to write, refusing to overwrite an existing wallet."""
    path = connect.keystore_path(s)
    if path.exists():
        raise UsageError(
            f"keystore {path} exists; refusing to overwrite it: give another --keystore"
        )
    return path


@app.command("create")
@handled
def wallet_create(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create a new key, saved encrypted in the keystore."""
    from eth_account import Account

    from metascheduler.keys import save_keystore

    s = settings(ctx)
    path = _new_keystore_path(s)
    acct = Account.create()
    save_keystore(acct, path, connect.password(s, confirm=True))
    out(ctx, as_json).emit(
        {"ok": True, "address": acct.address, "keystore": str(path)},
        lambda c: c.print(f"created wallet [bold]{acct.address}[/] in {path}"),
    )


@app.command("import")
@handled
def wallet_import(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Encrypt an existing private key into the keystore (the key from --key-env, or a hidden
    prompt)."""
    from metascheduler.keys import account_from_secret, save_keystore

    s = settings(ctx)
    path = _new_keystore_path(s)
    if s.key_env:
        secret = connect.env_value(s.key_env, "private key")
    else:
        secret = typer.prompt("Private key (hex, hidden)", hide_input=True, err=True)
    acct = account_from_secret(secret)
    save_keystore(acct, path, connect.password(s, confirm=True))
    out(ctx, as_json).emit(
        {"ok": True, "address": acct.address, "keystore": str(path)},
        lambda c: c.print(f"imported wallet [bold]{acct.address}[/] into {path}"),
    )


@app.command("address")
@handled
def wallet_address(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the wallet's address."""
    acct = connect.account(settings(ctx))
    if acct is None:
        raise UsageError(f"no keystore at {DEFAULT_KEYSTORE}: `metascheduler wallet create`")
    out(ctx, as_json).emit({"ok": True, "address": acct.address}, lambda c: c.print(acct.address))
