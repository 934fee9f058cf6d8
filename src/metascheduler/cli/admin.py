"""`metascheduler admin`: the market's admin (providers, oracle, fee, timeouts, pause, fees) and
the token's minter. Each command sends one transaction with the wallet, which must hold the role;
a refusal is the contract's error in words."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metascheduler.cli import connect, inputs
from metascheduler.cli.context import AmountArg, JsonOpt, handled, out
from metascheduler.cli.output import as_credits

if TYPE_CHECKING:
    from web3.types import TxReceipt

    from metascheduler.chain import Market

app = typer.Typer(
    help="Administer the market: providers, oracle, fee, timeouts, pause, fees, minting."
)

ProviderArg = Annotated[str, typer.Argument(help="The provider's address.")]

#: What a command prints after its transaction: the JSON keys besides ``ok`` and ``tx``, and the
#: line for people.
Report = tuple[dict[str, Any], str]


def _send(
    ctx: typer.Context,
    as_json: bool,
    send: Callable[[Market], TxReceipt],
    report: Callable[[Market, TxReceipt], Report],
) -> None:
    """Every admin command: one transaction from the wallet, then what it changed, read back."""
    market = connect.client(ctx).market
    receipt = send(market)
    data, line = report(market, receipt)
    tx = receipt["transactionHash"].to_0x_hex()
    out(ctx, as_json).emit({"ok": True, "tx": tx, **data}, lambda c: c.print(line))


def _provider_step(ctx: typer.Context, provider: str, as_json: bool, step: str) -> None:
    provider = inputs.address(provider, "provider")

    def send(market: Market) -> TxReceipt:
        return {
            "approve": market.approve_provider,
            "ban": market.ban_provider,
            "remove": market.remove_provider,
        }[step](provider)

    def report(market: Market, _: TxReceipt) -> Report:
        status = market.get_provider(provider)[0]
        return (
            {"provider": provider, "status": status.name},
            f"provider {provider} is now {status.name}",
        )

    _send(ctx, as_json, send, report)


@app.command("approve-provider")
@handled
def approve_provider(ctx: typer.Context, provider: ProviderArg, as_json: JsonOpt = False) -> None:
    """Approve a registered provider: it then gets jobs."""
    _provider_step(ctx, provider, as_json, "approve")


@app.command("ban-provider")
@handled
def ban_provider(ctx: typer.Context, provider: ProviderArg, as_json: JsonOpt = False) -> None:
    """Ban a provider for good: no new jobs, and it cannot register again (the jobs it accepted
    before the ban run on, and are paid)."""
    _provider_step(ctx, provider, as_json, "ban")


@app.command("remove-provider")
@handled
def remove_provider(ctx: typer.Context, provider: ProviderArg, as_json: JsonOpt = False) -> None:
    """Remove a provider's record (not a banned one's): it may register afresh."""
    _provider_step(ctx, provider, as_json, "remove")


def _config(market: Market, _: TxReceipt) -> Report:
    """The market's settings after a command changed one of them."""
    cfg: dict[str, Any] = market.config()
    return cfg, (
        f"oracle {cfg['oracle']}, fee {cfg['fee_bps']} bps, "
        f"{'paused' if cfg['paused'] else 'taking requests'}, timeouts: accept "
        f"{cfg['accept_timeout_s']} s, start {cfg['start_timeout_s']} s"
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
    _send(ctx, as_json, lambda m: m.set_oracle(oracle), _config)


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
    _send(ctx, as_json, lambda m: m.set_fee(bps), _config)


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

    def send(market: Market) -> TxReceipt:
        cfg = market.config()
        accept_s = cfg["accept_timeout_s"] if accept is None else accept
        start_s = cfg["start_timeout_s"] if start is None else start
        return market.set_timeouts(accept_s, start_s)

    _send(ctx, as_json, send, _config)


@app.command("pause")
@handled
def pause(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Stop new job requests; running jobs, cancels and withdrawals go on."""
    _send(ctx, as_json, lambda m: m.pause(), _config)


@app.command("unpause")
@handled
def unpause(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Accept new job requests again."""
    _send(ctx, as_json, lambda m: m.unpause(), _config)


ToOpt = Annotated[
    str | None, typer.Option("--to", help="Wallet that receives them (default: yours).")
]


def _receiver(market: Market, to: str | None) -> str:
    """The wallet given by ``--to``, else the one signing."""
    return to or market.sender_or_fail().address


@app.command("withdraw-fees")
@handled
def withdraw_fees(
    ctx: typer.Context, amount: AmountArg, to: ToOpt = None, as_json: JsonOpt = False
) -> None:
    """Move accrued platform fees out of the market to a wallet."""
    units = inputs.credit_units(amount, "the withdrawal")
    to = inputs.optional_address(to, "--to")

    def report(market: Market, _: TxReceipt) -> Report:
        left = market.accrued_fees()
        receiver = _receiver(market, to)
        return (
            {"to": receiver, "amount": units, "accrued_fees": left},
            f"withdrew {as_credits(units)} credits of fees to {receiver}; "
            f"{as_credits(left)} left in the market",
        )

    _send(ctx, as_json, lambda m: m.withdraw_fees(_receiver(m, to), units), report)


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
    _send(
        ctx,
        as_json,
        lambda m: m.set_request_fee(units),
        lambda m, r: (
            {"request_fee": units},
            f"each request now pays {as_credits(units)} credits",
        ),
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

    def report(market: Market, receipt: TxReceipt) -> Report:
        events = market.decode_events(receipt)
        swept = sum(int(e.args["amount"]) for e in events if e.name == "SurplusSwept")
        return {"to": to, "amount": swept}, f"swept {as_credits(swept)} credits to {to}"

    _send(ctx, as_json, lambda m: m.sweep_surplus(to), report)


@app.command("mint")
@handled
def mint(ctx: typer.Context, amount: AmountArg, to: ToOpt = None, as_json: JsonOpt = False) -> None:
    """Create credits in a wallet (the wallet signing must hold the token's minter role)."""
    units = inputs.credit_units(amount, "the amount to mint")
    to = inputs.optional_address(to, "--to")

    def report(market: Market, _: TxReceipt) -> Report:
        receiver = _receiver(market, to)
        wallet = market.wallet_balance(receiver)
        return (
            {"to": receiver, "amount": units, "wallet": wallet},
            f"minted {as_credits(units)} credits to {receiver}; "
            f"its wallet holds {as_credits(wallet)}",
        )

    _send(ctx, as_json, lambda m: m.mint(_receiver(m, to), units), report)
