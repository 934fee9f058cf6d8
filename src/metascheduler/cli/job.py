"""`metascheduler job`: submit, follow and manage jobs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metascheduler.cli import connect, inputs
from metascheduler.cli.context import JsonOpt, handled, out
from metascheduler.cli.errors import UsageError
from metascheduler.cli.output import as_credits, as_utc
from metascheduler.cli.tables import job_table, timeline

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(help="Submit, follow and manage jobs.")


@app.command("submit")
@handled
def job_submit(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="Job spec file (YAML or JSON; docs/job-spec.md).")],
    escrow: Annotated[str, typer.Option("--escrow", help="Credits locked for the job.")],
    max_price: Annotated[
        str, typer.Option("--max-price", help="Most credits per minute you accept to pay.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Submit a job: the spec is validated before anything is paid."""
    from metascheduler.spec import load_spec

    job_spec = load_spec(spec)
    escrow_u = inputs.credit_units(escrow, "--escrow")
    price_u = inputs.credit_units(max_price, "--max-price")
    job_id = connect.client(ctx).submit(job_spec, escrow=escrow_u, max_price=price_u)
    minutes = escrow_u // price_u
    out(ctx, as_json).emit(
        {
            "ok": True,
            "job_id": job_id,
            "name": job_spec.name,
            "cpus": job_spec.cpus,
            "gpus": job_spec.gpus,
            "mem_mb": job_spec.mem_mb,
            "escrow": escrow_u,
            "max_price_per_minute": price_u,
        },
        lambda c: c.print(
            f"submitted job [bold]{job_id}[/] ({job_spec.name}): escrow {as_credits(escrow_u)} "
            f"credits, at most {as_credits(price_u)} credits/min (at least {minutes} min at "
            f"that price).\nfollow it: metascheduler job watch {job_id}"
        ),
    )


@app.command("status")
@handled
def job_status(ctx: typer.Context, job_id: int, as_json: JsonOpt = False) -> None:
    """A job's status and the credits it has spent so far."""
    info = connect.client(ctx, wallet=False).status(job_id)
    out(ctx, as_json).emit({"ok": True, **info.to_json()}, lambda c: c.print(job_table(info)))


@app.command("list")
@handled
def job_list(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", "--state", help="Only jobs in this status (repeatable; --state: same)."
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Everyone's jobs, not only yours.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Your jobs (or everyone's), by id."""
    from metascheduler.chain.types import JobStatus

    wanted = []
    for name in status or []:
        try:
            wanted.append(JobStatus[name.upper().replace("-", "_")])
        except KeyError:
            raise UsageError(
                f"unknown status {name!r}: use one of {', '.join(s.name for s in JobStatus)}"
            ) from None
    jobs = connect.client(ctx, wallet=not all_).list(mine=not all_, statuses=wanted or None)

    def human(c: Console) -> None:
        from rich.table import Table

        t = Table("job", "status", "provider", "price/min", "escrow", "spent", "since")
        for j in jobs:
            t.add_row(
                str(j.job_id),
                j.status.name,
                (j.provider or "-")[:10],
                as_credits(j.price_per_minute),
                as_credits(j.escrow),
                as_credits(j.spent),
                as_utc(j.since),
            )
        c.print(t if jobs else "no jobs")

    out(ctx, as_json).emit({"ok": True, "jobs": [j.to_json() for j in jobs]}, human)


@app.command("watch")
@handled
def job_watch(
    ctx: typer.Context,
    job_id: int,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between reads.")] = 1.0,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Follow a job until it ends, with the credits spent so far (JSON lines with --json)."""
    client = connect.client(ctx, wallet=False)
    output = out(ctx, as_json)
    updates = client.watch(job_id, poll_s=poll, timeout_s=timeout)
    if output.json:
        for info in updates:
            output.emit({"ok": True, **info.to_json()})
        return
    from rich.live import Live

    with Live(console=output.console, auto_refresh=False) as live:
        for info in updates:
            live.update(job_table(info), refresh=True)


@app.command("cancel")
@handled
def job_cancel(ctx: typer.Context, job_id: int, as_json: JsonOpt = False) -> None:
    """Cancel a live job: billed its running time only, the rest refunded."""
    info = connect.client(ctx).cancel(job_id)
    out(ctx, as_json).emit(
        {"ok": True, **info.to_json()},
        lambda c: c.print(
            f"job {job_id} cancelled: billed {as_credits(info.spent)} credits, "
            f"refunded {as_credits(info.refunded)}"
        ),
    )


@app.command("top-up")
@handled
def job_top_up(
    ctx: typer.Context,
    job_id: int,
    amount: Annotated[str, typer.Argument(help="Credits to add to the job's escrow.")],
    as_json: JsonOpt = False,
) -> None:
    """Add credits to a live job's escrow."""
    units = inputs.credit_units(amount, "the top-up")
    escrow = connect.client(ctx).top_up(job_id, units)
    out(ctx, as_json).emit(
        {"ok": True, "job_id": job_id, "amount": units, "escrow": escrow},
        lambda c: c.print(f"job {job_id}: escrow now {as_credits(escrow)} credits"),
    )


@app.command("history")
@handled
def job_history(ctx: typer.Context, job_id: int, as_json: JsonOpt = False) -> None:
    """A job's timeline from its on-chain events."""
    steps = connect.client(ctx, wallet=False).history(job_id)
    out(ctx, as_json).emit(
        {"ok": True, "job_id": job_id, "timeline": [s.to_json() for s in steps]},
        lambda c: c.print(timeline(steps)),
    )


@app.command("logs")
@handled
def job_logs(
    ctx: typer.Context,
    job_id: int,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Stream while the job runs; exit with its exit code at the end."
        ),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Stop following after this many seconds.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A job's output lines (stdout, stderr, and the provider's messages), decrypted with your
    wallet: only the job's customer can read them. JSON lines with --json."""
    from metascheduler.cli.output import log_line

    stream = connect.client(ctx).logs(job_id, follow=follow, timeout_s=timeout)
    output = out(ctx, as_json)
    for rec in stream:
        if output.json:
            output.emit({"t": rec.t, "stream": rec.stream, "line": rec.line, "agent": rec.agent})
        else:
            log_line(rec)
    if output.json:
        output.emit(
            {"ok": True, "job_id": job_id, "ended": stream.final, "exit_code": stream.exit_code}
        )
    if follow and not stream.final:
        print(f"job {job_id}: the log ended without the provider's final chunk", file=sys.stderr)
        raise typer.Exit(1)
    if follow and stream.exit_code:
        raise typer.Exit(stream.exit_code if 0 < stream.exit_code < 256 else 1)


@app.command("outputs")
@handled
def job_outputs(
    ctx: typer.Context,
    job_id: int,
    dest: Annotated[Path, typer.Option("-o", "--output", help="Folder to unpack the files into.")],
    as_json: JsonOpt = False,
) -> None:
    """Fetch a job's output files: checked against the digest its provider committed, decrypted
    with your wallet, unpacked into DIR (any path that would land outside it is refused)."""
    got = connect.client(ctx).outputs(job_id, dest)
    checked = (
        "matches the digest committed on chain"
        if got.committed
        else ("no digest on chain to check against (this contract records none)")
    )
    out(ctx, as_json).emit(
        {
            "ok": True,
            "job_id": job_id,
            "dest": str(got.dest),
            "files": got.files,
            "size": got.size,
            "sha256": got.sha256,
            "digest": got.digest,
            "digest_checked": got.committed is not None,
        },
        lambda c: c.print(
            f"job {job_id}: {len(got.files)} files into {got.dest} ({got.size:,} bytes "
            f"encrypted); result digest {got.digest}: {checked}"
        ),
    )
