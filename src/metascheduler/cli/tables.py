"""Rich renderings of a job shared by several commands: its record, and its timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metascheduler.cli.output import as_credits, as_utc

if TYPE_CHECKING:
    from rich.console import RenderableType

    from metascheduler.client import JobInfo


def job_table(info: JobInfo) -> RenderableType:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    c = as_credits
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("job", f"{info.job_id}  [bold]{info.status.name}[/]")
    t.add_row("customer", info.customer)
    t.add_row("provider", info.provider or "-")
    price = "-" if info.price_per_minute is None else f"{c(info.price_per_minute)} credits/min"
    t.add_row("price", price + (f" (fee {info.fee_bps} bps)" if info.fee_bps else ""))
    t.add_row("escrow", f"{c(info.escrow)} credits")
    t.add_row("spent", f"{c(info.spent)} credits")
    if info.escrow:
        t.add_row("", ProgressBar(total=info.escrow, completed=info.spent, width=30))
    if info.terminal:
        t.add_row(
            "bill",
            f"paid {c(info.paid)}, fee {c(info.fee)}, refunded {c(info.refunded)}"
            + (f"; exit code {info.exit_code}" if info.exit_code not in (None, -1) else ""),
        )
        t.add_row("ended", as_utc(info.since))
    else:
        t.add_row("remaining", f"{c(info.remaining)} credits")
        t.add_row("since", as_utc(info.since))
        if info.funded_until is not None:
            left = info.funded_until - info.chain_time
            t.add_row("funded until", f"{as_utc(info.funded_until)} ({max(left, 0)} s from now)")
    t.add_row("chain time", f"{as_utc(info.chain_time)} (block {info.block})")
    return t


_MOVED = {
    "customer_to_escrow": "escrow",
    "to_provider": "provider",
    "to_fees": "fees",
    "to_customer": "customer",
}


def timeline(steps: list[Any], width: int | None = None) -> RenderableType:
    from rich import box
    from rich.console import Console, Group
    from rich.table import Table
    from rich.text import Text

    # Narrow fixed columns. On a wide terminal the notes (full addresses and amounts) get the
    # width left; on a narrow one they follow the table, one line each, instead of a thin column.
    wide = (width or Console().width) >= 120
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("block", no_wrap=True, justify="right")
    t.add_column("time (UTC)", no_wrap=True)
    t.add_column("event", no_wrap=True)
    t.add_column("status", no_wrap=True)
    t.add_column("credits moved", no_wrap=True)
    if wide:
        t.add_column("note", ratio=1)
    notes = []
    for s in steps:
        moved = "\n".join(f"{_MOVED.get(k, k)} +{as_credits(v)}" for k, v in s.moved.items() if v)
        when = datetime.fromtimestamp(s.time, UTC).strftime("%m-%d %H:%M:%S")
        # The status the step went to: the one it left is the row above.
        row = [str(s.block), when, s.event.removeprefix("Job"), s.to_status, moved or "-"]
        if wide:
            t.add_row(*row, s.note)
        else:
            t.add_row(*row)
            if s.note:
                notes.append(Text(f"block {s.block}: {s.note}"))
    return t if wide else Group(t, *notes)
