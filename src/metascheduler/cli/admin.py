"""`metascheduler admin`: the market's admin (providers, oracle, fee, timeouts, pause, fees) and
the token's minter. Each command sends one transaction with the wallet, which must hold the role;
a refusal is the contract's error in words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from metascheduler.cli import connect, inputs
from metascheduler.cli.context import JsonOpt, handled, out
from metascheduler.cli.output import as_credits

if TYPE_CHECKING:
    from web3.types import TxReceipt

    from metascheduler.chain import Market

app = typer.Typer(
    help="Administer the market: providers, oracle, fee, timeouts, pause, fees, minting."
)

ProviderArg = Annotated[str, typer.Argument(help="The provider's address.")]


def _market(ctx: typer.Context) -> Market:
    return connect.client(ctx).market


def _tx(receipt: TxReceipt) -> str:
    return receipt["transactionHash"].to_0x_hex()


def _provider_step(ctx: typer.Context, provider: str, as_json: bool, step: str) -> None:
    provider = inputs.address(provider, "provider")
    market = _market(ctx)
    send = {
        "approve": market.approve_provider,
        "ban": market.ban_provider,
        "remove": market.remove_provider,
    }[step]
    tx = _tx(send(provider))
    status, _, _ = market.get_provider(provider)
    out(ctx, as_json).emit(
        {"ok": True, "tx": tx, "provider": provider, "status": status.name},
        lambda c: c.print(f"provider {provider} is now {status.name}"),
    )


@app.command("approve-provider")
@handled
def approve_provider(ctx: typer.Context, provider: ProviderArg, as_json: JsonOpt = False) -> None:
    """Approve a registered provider: it then gets jobs."""
    _provider_step(ctx, provider, as_json, "approve")


@app.command("ban-provider")
@handled
def ban_provider(ctx: typer.Context, provider: ProviderArg, as_json: JsonOpt = False) -> None:
    """Ban a provider for good: no new jobs, and it cannot register again."""
    _provider_step(ctx, provider, as_json, "ban")


@app.command("remove-provider")
@handled
def remove_provider(ctx: typer.Context, provider: ProviderArg, as_json: JsonOpt = False) -> None:
    """Remove a provider's record (not a banned one's): it may register afresh."""
    _provider_step(ctx, provider, as_json, "remove")


def _settings_changed(ctx: typer.Context, market: Market, tx: str, as_json: bool) -> None:
    cfg: dict[str, Any] = market.config()
    out(ctx, as_json).emit(
        {"ok": True, "tx": tx, **cfg},
        lambda c: c.print(
            f"oracle {cfg['oracle']}, fee {cfg['fee_bps']} bps, "
            f"{'paused' if cfg['paused'] else 'taking requests'}, timeouts: accept "
            f"{cfg['accept_timeout_s']} s, start {cfg['start_timeout_s']} s"
        ),
    )


@app.command("set-oracle")
@handled
def set_oracle(
    ctx: typer.Context,
    oracle: Annotated[str, typer.Argument(help="The new oracle's address.")],
    as_json: JsonOpt = False,
) -> None:
    """Hand the oracle's role to another address."""
    oracle = inputs.address(oracle, "oracle")
    market = _market(ctx)
    _settings_changed(ctx, market, _tx(market.set_oracle(oracle)), as_json)


@app.command("set-fee")
@handled
def set_fee(
    ctx: typer.Context,
    bps: Annotated[
        int, typer.Argument(help="Fee in basis points of providers' earnings.", min=0, max=65_535)
    ],
    as_json: JsonOpt = False,
) -> None:
    """Set the platform fee for jobs placed from now on (placed jobs keep theirs)."""
    market = _market(ctx)
    _settings_changed(ctx, market, _tx(market.set_fee(bps)), as_json)


@app.command("set-timeouts")
@handled
def set_timeouts(
    ctx: typer.Context,
    accept: Annotated[
        int | None,
        typer.Option("--accept", help="Seconds a provider has to accept a placement.", min=1),
    ] = None,
    start: Annotated[
        int | None,
        typer.Option("--start", help="Seconds a queued job may wait to start.", min=1),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set how long placements may wait to be accepted and to start (one left out is kept)."""
    market = _market(ctx)
    cfg = market.config()
    accept_s = cfg["accept_timeout_s"] if accept is None else accept
    start_s = cfg["start_timeout_s"] if start is None else start
    _settings_changed(ctx, market, _tx(market.set_timeouts(accept_s, start_s)), as_json)


@app.command("pause")
@handled
def pause(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Stop new job requests; running jobs, cancels and withdrawals go on."""
    market = _market(ctx)
    _settings_changed(ctx, market, _tx(market.pause()), as_json)


@app.command("unpause")
@handled
def unpause(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Accept new job requests again."""
    market = _market(ctx)
    _settings_changed(ctx, market, _tx(market.unpause()), as_json)


AmountArg = Annotated[str, typer.Argument(help="Credits, e.g. 12.5")]
ToOpt = Annotated[
    str | None, typer.Option("--to", help="Wallet that receives them (default: yours).")
]


def _credits_to(
    ctx: typer.Context, amount: str, to: str | None, what: str
) -> tuple[Market, int, str]:
    """The market as the wallet, the amount in units and the receiving wallet (default: ours)."""
    units = inputs.credit_units(amount, what)
    to = inputs.optional_address(to, "--to")
    client = connect.client(ctx)
    return client.market, units, to or client.address


@app.command("withdraw-fees")
@handled
def withdraw_fees(
    ctx: typer.Context, amount: AmountArg, to: ToOpt = None, as_json: JsonOpt = False
) -> None:
    """Move accrued platform fees out of the market to a wallet."""
    market, units, to = _credits_to(ctx, amount, to, "the withdrawal")
    tx = _tx(market.withdraw_fees(to, units))
    left = market.accrued_fees()
    out(ctx, as_json).emit(
        {"ok": True, "tx": tx, "to": to, "amount": units, "accrued_fees": left},
        lambda c: c.print(
            f"withdrew {as_credits(units)} credits of fees to {to}; "
            f"{as_credits(left)} left in the market"
        ),
    )


@app.command("set-request-fee")
@handled
def set_request_fee(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="Credits each new request pays, e.g. 0.01")],
    as_json: JsonOpt = False,
) -> None:
    """Set the fee every new job request pays to the platform, not refunded even on cancel:
    what a flood of requests costs its sender."""
    units = inputs.credit_units(amount, "the request fee", allow_zero=True)
    market = _market(ctx)
    tx = _tx(market.set_request_fee(units))
    out(ctx, as_json).emit(
        {"ok": True, "tx": tx, "request_fee": units},
        lambda c: c.print(f"each request now pays {as_credits(units)} credits"),
    )


@app.command("sweep-surplus")
@handled
def sweep_surplus(
    ctx: typer.Context,
    to: Annotated[str, typer.Argument(help="Wallet that receives the surplus.")],
    as_json: JsonOpt = False,
) -> None:
    """Send the credits that reached the market by plain transfer (not by deposit) to a wallet,
    typically back to their sender. Balances, escrows and fees are never touched."""
    to = inputs.address(to, "the receiving wallet")
    market = _market(ctx)
    receipt = market.sweep_surplus(to)
    swept = sum(
        int(e.args["amount"]) for e in market.decode_events(receipt) if e.name == "SurplusSwept"
    )
    out(ctx, as_json).emit(
        {"ok": True, "tx": _tx(receipt), "to": to, "amount": swept},
        lambda c: c.print(f"swept {as_credits(swept)} credits to {to}"),
    )


@app.command("mint")
@handled
def mint(ctx: typer.Context, amount: AmountArg, to: ToOpt = None, as_json: JsonOpt = False) -> None:
    """Create credits in a wallet (the wallet signing must hold the token's minter role)."""
    market, units, to = _credits_to(ctx, amount, to, "the amount to mint")
    tx = _tx(market.mint(to, units))
    wallet = market.wallet_balance(to)
    out(ctx, as_json).emit(
        {"ok": True, "tx": tx, "to": to, "amount": units, "wallet": wallet},
        lambda c: c.print(
            f"minted {as_credits(units)} credits to {to}; its wallet holds {as_credits(wallet)}"
        ),
    )
