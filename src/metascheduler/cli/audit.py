"""`metascheduler audit`: check, from the chain alone, that jobs were billed by the rules and
credits add up. Each command exits 1 on a discrepancy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metascheduler.cli import connect, inputs
from metascheduler.cli.context import JsonOpt, handled, out
from metascheduler.cli.errors import EXIT_FAILED
from metascheduler.cli.output import as_credits
from metascheduler.cli.tables import timeline

if TYPE_CHECKING:
    from rich.console import Console

    from metascheduler.audit.model import AccountAudit, GridAudit, JobAudit
    from metascheduler.audit.results import StoredResults

app = typer.Typer(
    help="Check, from the chain alone, that jobs were billed by the rules and credits add up."
)

ResultsOpt = Annotated[
    Path | None,
    typer.Option(
        "--results",
        help=(
            "The API's settings file (TOML; MS_* from the environment too): check every "
            "committed result digest against the ciphertext its results database and object "
            "store hold. Without it the audit reads the chain alone."
        ),
        dir_okay=False,
    ),
]


def _results(path: Path | None) -> StoredResults | None:
    if path is None:
        return None
    from metascheduler.api.settings import ApiSettings
    from metascheduler.audit.results import StoredResults

    return StoredResults.from_settings(ApiSettings.load(path))


@app.command("job")
@handled
def audit_job_cmd(
    ctx: typer.Context, job_id: int, results: ResultsOpt = None, as_json: JsonOpt = False
) -> None:
    """A job's timeline and whether its bill follows the contract's rules (exit 1 if not)."""
    from metascheduler.audit import audit_job

    client = connect.client(ctx, wallet=False)
    report = audit_job(
        client.market, job_id, from_block=client.from_block, results=_results(results)
    )
    out(ctx, as_json).emit(report.to_json(), lambda c: _print_job_audit(c, report))
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _print_job_audit(c: Console, a: JobAudit) -> None:
    c.print(timeline(a.steps))
    if a.expected and a.actual:
        e, x = a.expected, a.actual
        cr = as_credits
        c.print(
            f"bill: paid {cr(x.paid)} + fee {cr(x.fee)} + refunded {cr(x.refunded)}; the rules "
            f"give paid {cr(e.paid)} + fee {cr(e.fee)} + refunded {cr(e.refunded)}"
            + (f" ({a.billed_seconds} s metered)" if a.billed_seconds is not None else "")
        )
    if a.results_check is not None:
        r = a.results_check
        c.print(
            f"stored results: {'match' if r.ok else 'do not match'} the committed digest "
            f"{r.committed}"
        )
    _print_verdict(c, a.ok, a.discrepancies, f"job {a.job_id} ({a.status})")


def _print_verdict(c: Console, ok: bool, found: list[Any], what: str) -> None:
    from rich.markup import escape

    if ok:
        c.print(f"[bold green]OK[/] {what}: everything follows the contract's rules")
        return
    c.print(f"[bold red]DISCREPANCIES[/] {what}: {len(found)}")
    for d in found:
        where = ", ".join(
            x
            for x in (
                f"job {d.job_id}" if d.job_id is not None else "",
                f"block {d.block}" if d.block is not None else "",
                f"account {d.account}" if d.account else "",
            )
            if x
        )
        c.print(f"  [red]{d.check}[/] ({where}): {escape(d.message)}")


@app.command("account")
@handled
def audit_account_cmd(
    ctx: typer.Context,
    address: Annotated[str | None, typer.Argument(help="Account (default: your wallet).")] = None,
    last: Annotated[
        int, typer.Option("--last", help="Movements shown (0: all); --json gives all.", min=0)
    ] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Every movement of an account's credits in the market, from the events alone, and its
    balance checked against the contract (exit 1 if they disagree)."""
    from metascheduler.audit import audit_account

    address = inputs.optional_address(address, "account")
    client = connect.client(ctx, wallet=address is None)
    who = address if address is not None else client.address
    report = audit_account(client.market, who, from_block=client.from_block)
    out(ctx, as_json).emit(report.to_json(), lambda c: _print_account_audit(c, report, last))
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


_KINDS = {
    "deposit": "deposited",
    "withdrawal": "withdrawn",
    "escrow": "locked in jobs",
    "top-up": "topped up",
    "refund": "refunded",
    "payment": "earned",
}


def _print_account_audit(c: Console, a: AccountAudit, last: int) -> None:
    from rich import box
    from rich.table import Table

    cr = as_credits
    shown = a.movements[-last:] if last else a.movements
    c.print(f"account {a.account} on market {a.market}, blocks {a.from_block}-{a.block}")
    if len(shown) < len(a.movements):
        c.print(f"the last {len(shown)} of {len(a.movements)} movements (--last 0: all)")
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("block", "time (UTC)", "movement", "job", "credits", "balance"):
        t.add_column(col, no_wrap=True, justify="left" if col == "movement" else "right")
    for m in shown:
        when = datetime.fromtimestamp(m.time, UTC).strftime("%m-%d %H:%M:%S")
        job = "-" if m.job_id is None else str(m.job_id)
        sign = "+" if m.amount >= 0 else "-"
        t.add_row(str(m.block), when, m.kind, job, f"{sign}{cr(abs(m.amount))}", cr(m.balance))
    if shown:
        c.print(t)
    totals = a.totals()
    c.print(
        "totals: "
        + (
            ", ".join(f"{_KINDS.get(k, k)} {cr(abs(v))}" for k, v in totals.items())
            or "no movements"
        )
    )
    c.print(
        f"balance {cr(a.balance)} credits in the market (its events sum to {cr(a.rebuilt)}); "
        f"{cr(a.in_escrow)} in live jobs' escrow; {cr(a.wallet)} in the wallet"
    )
    _print_verdict(c, a.ok, a.discrepancies, f"account {a.account}")


@app.command("all")
@handled
def audit_all_cmd(ctx: typer.Context, results: ResultsOpt = None, as_json: JsonOpt = False) -> None:
    """Conservation of credits and every job's bill (exit 1 on any discrepancy)."""
    from metascheduler.audit import audit_all

    client = connect.client(ctx, wallet=False)
    stored = _results(results)
    output = out(ctx, as_json)
    if output.json:
        report = audit_all(client.market, from_block=client.from_block, results=stored)
    else:
        from rich.console import Console

        # A spinner on stderr (shown on a terminal only) with the step under way.
        with Console(stderr=True).status("auditing") as status:
            report = audit_all(
                client.market,
                from_block=client.from_block,
                progress=lambda m: status.update(f"auditing: {m}"),
                results=stored,
            )
    output.emit(report.to_json(), lambda c: _print_grid_audit(c, report))
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _print_grid_audit(c: Console, g: GridAudit) -> None:
    d = g.to_json()
    cr = as_credits
    c.print(f"market {g.market}, blocks {g.from_block}-{g.block}")
    c.print(
        f"jobs: {d['jobs']} ({d['jobs_ok']} billed by the rules); "
        + ", ".join(f"{k} {v}" for k, v in d["jobs_by_status"].items())
    )
    c.print(
        f"credits held {cr(g.token_held)} = balances {cr(g.balances_total)} ({g.accounts} "
        f"accounts) + live escrows {cr(g.live_escrow)} + fees {cr(g.accrued_fees)}"
    )
    if g.results_checked is not None:
        c.print(
            f"stored results: {g.results_checked} job(s) checked against their committed "
            f"digest, {len(d['results_mismatched'])} do not match"
        )
    _print_verdict(c, g.ok, g.all_discrepancies, "grid")
