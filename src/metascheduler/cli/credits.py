"""`metascheduler credits`: balance, deposit, withdraw, devnet faucet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from metascheduler.cli import connect, inputs
from metascheduler.cli.context import AmountArg, JsonOpt, handled, out
from metascheduler.cli.output import as_credits

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(help="Credits: balance, deposit, withdraw, devnet faucet.")


@app.command("balance")
@handled
def credits_balance(
    ctx: typer.Context,
    account: Annotated[
        str | None, typer.Option("--account", help="Another address (default: yours).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Credits in your wallet and in the market."""
    account = inputs.optional_address(account, "--account")
    client = connect.client(ctx, wallet=account is None)
    b = client.balance(account)

    def human(c: Console) -> None:
        c.print(f"account  {b.account}")
        c.print(f"wallet   {as_credits(b.wallet)} credits")
        c.print(f"market   {as_credits(b.market)} credits (free to lock in jobs or withdraw)")
        c.print(f"gas      {b.gas_wei / 1e18:.6f} (native coin)")

    out(ctx, as_json).emit({"ok": True, **b.to_json()}, human)


@app.command("deposit")
@handled
def credits_deposit(ctx: typer.Context, amount: AmountArg, as_json: JsonOpt = False) -> None:
    """Move credits from your wallet into the market (with a permit where possible)."""
    units = inputs.credit_units(amount, "the deposit")
    d = connect.client(ctx).deposit(units)
    out(ctx, as_json).emit(
        {"ok": True, **d.to_json()},
        lambda c: c.print(f"deposited {as_credits(d.amount)} credits ({d.method})"),
    )


@app.command("withdraw")
@handled
def credits_withdraw(ctx: typer.Context, amount: AmountArg, as_json: JsonOpt = False) -> None:
    """Move credits from the market back to your wallet."""
    units = inputs.credit_units(amount, "the withdrawal")
    connect.client(ctx).withdraw(units)
    out(ctx, as_json).emit(
        {"ok": True, "amount": units}, lambda c: c.print(f"withdrew {as_credits(units)} credits")
    )


@app.command("faucet")
@handled
def credits_faucet(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Draw free credits into your wallet (local devnets only)."""
    got = connect.client(ctx).faucet()
    out(ctx, as_json).emit(
        {"ok": True, "amount": got},
        lambda c: c.print(f"the faucet gave {as_credits(got)} credits (now deposit them)"),
    )
