"""`metascheduler provider`: register a provider and read its record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from metascheduler.cli import connect, inputs
from metascheduler.cli.context import JsonOpt, handled, out
from metascheduler.cli.output import as_credits

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(help="Register a provider and read its record.")


@app.command("register")
@handled
def provider_register(
    ctx: typer.Context,
    cpus: Annotated[int, typer.Option("--cpus", help="CPUs, summed over the cluster.")],
    mem_mb: Annotated[int, typer.Option("--mem-mb", help="Memory in MB, summed.")],
    cpu_price: Annotated[str, typer.Option("--cpu-price", help="Credits per CPU-minute.")],
    nodes: Annotated[int, typer.Option("--nodes")] = 1,
    gpus: Annotated[int, typer.Option("--gpus")] = 0,
    gpu_price: Annotated[str, typer.Option("--gpu-price", help="Credits per GPU-minute.")] = "0",
    gb_price: Annotated[str, typer.Option("--gb-price", help="Credits per GB-minute.")] = "0",
    label: Annotated[
        list[str] | None, typer.Option("--label", help="A label jobs may ask for (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register (or update) your wallet as a provider; the admin then approves it."""
    from metascheduler.chain.types import Hardware, Prices

    def price(text: str, what: str) -> int:
        return 0 if text.strip() in ("0", "0.0") else inputs.credit_units(text, what)

    hw = Hardware(nodes, cpus, gpus, mem_mb)
    prices = Prices(
        price(cpu_price, "--cpu-price"),
        price(gpu_price, "--gpu-price"),
        price(gb_price, "--gb-price"),
    )
    client = connect.client(ctx)
    tx = client.register_provider(hw, prices, label or [])
    info = client.provider()
    out(ctx, as_json).emit(
        {"ok": True, "tx": tx, **info.to_json()},
        lambda c: c.print(
            f"provider {info.address} registered: {info.status} "
            "(an admin must approve it before it gets jobs)"
        ),
    )


@app.command("status")
@handled
def provider_status(
    ctx: typer.Context,
    address: Annotated[str | None, typer.Argument(help="Provider (default: your wallet).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A provider's standing, hardware, prices, labels and market balance."""
    address = inputs.optional_address(address, "provider")
    info = connect.client(ctx, wallet=address is None).provider(address)

    def human(c: Console) -> None:
        hw, p = info.hardware, info.prices
        c.print(f"provider  {info.address}  [bold]{info.status}[/]")
        c.print(f"hardware  {hw.nodes} nodes, {hw.cpus} CPUs, {hw.gpus} GPUs, {hw.mem_mb} MB")
        c.print(
            f"prices    {as_credits(p.cpu)}/CPU-min, {as_credits(p.gpu)}/GPU-min, "
            f"{as_credits(p.gb)}/GB-min (credits)"
        )
        c.print(f"labels    {', '.join(info.labels) or '-'}")
        c.print(f"balance   {as_credits(info.balance)} credits in the market")

    out(ctx, as_json).emit({"ok": True, **info.to_json()}, human)
