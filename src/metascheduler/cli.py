"""`metascheduler`: the command line over the SDK (metascheduler.client) and the audit.

Heavy modules (web3, the SDK, the services) are imported inside the commands, so that
`metascheduler --help` answers at once. Every command takes `--json`: its last line on stdout is
then one JSON object (amounts in integer credit units, 6 decimals). Exit codes: 0 ok, 1 the
operation failed or the audit found a discrepancy, 2 bad input (spec, amount, key, config),
3 the RPC endpoint is down.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from metascheduler import billing

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from rich.console import Console, RenderableType

    from metascheduler.audit.model import AccountAudit, GridAudit, JobAudit
    from metascheduler.client import Client, JobInfo

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_RPC = 0, 1, 2, 3
DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_KEYSTORE = Path.home() / ".metascheduler" / "keystore.json"

app = typer.Typer(
    name="metascheduler",
    help="An open meta-scheduler for a grid of HPC providers paid in on-chain credits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
wallet_app = typer.Typer(help="Create, import and show your wallet (an encrypted keystore).")
credits_app = typer.Typer(help="Credits: balance, deposit, withdraw, devnet faucet.")
job_app = typer.Typer(help="Submit, follow and manage jobs.")
provider_app = typer.Typer(help="Register a provider and read its record.")
audit_app = typer.Typer(
    help="Check, from the chain alone, that jobs were billed by the rules and credits add up."
)
oracle_app = typer.Typer(help="The oracle (meta-scheduler) service.")
agent_app = typer.Typer(help="A provider's agent service.")
api_app = typer.Typer(help="The read API and dashboard.")
devnet_app = typer.Typer(help="A whole local grid.")
for _sub, _name in [
    (wallet_app, "wallet"),
    (credits_app, "credits"),
    (job_app, "job"),
    (provider_app, "provider"),
    (audit_app, "audit"),
    (oracle_app, "oracle"),
    (agent_app, "agent"),
    (api_app, "api"),
    (devnet_app, "devnet"),
]:
    app.add_typer(_sub, name=_name, no_args_is_help=True)

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object as the last line (for scripts).")
]


class UsageError(Exception):
    """Bad input from the user (exit 2)."""


@dataclass
class Settings:
    rpc_url: str = DEFAULT_RPC
    market: str | None = None
    keystore: Path | None = None
    password_env: str | None = None
    key_env: str | None = None
    from_block: int | None = None
    json: bool = False


@app.callback()
def _global(
    ctx: typer.Context,
    rpc_url: Annotated[
        str, typer.Option("--rpc-url", envvar="MS_RPC_URL", help="JSON-RPC endpoint.")
    ] = DEFAULT_RPC,
    market: Annotated[
        str | None,
        typer.Option("--market", envvar="MS_MARKET_ADDRESS", help="The JobMarket's address."),
    ] = None,
    keystore: Annotated[
        Path | None,
        typer.Option(
            "--keystore", envvar="MS_KEYSTORE", help=f"Keystore file [default: {DEFAULT_KEYSTORE}]"
        ),
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env",
            envvar="MS_PASSWORD_ENV",
            help="NAME of an environment variable holding the keystore password (else a prompt).",
        ),
    ] = None,
    key_env: Annotated[
        str | None,
        typer.Option(
            "--key-env",
            envvar="MS_KEY_ENV",
            help="NAME of an environment variable holding a raw private key (instead of a "
            "keystore). Never put a key itself on the command line.",
        ),
    ] = None,
    from_block: Annotated[
        int | None,
        typer.Option(
            "--from-block",
            envvar="MS_FROM_BLOCK",
            help="The market's deployment block (found by bisection if not given).",
            min=0,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    ctx.obj = Settings(rpc_url, market, keystore, password_env, key_env, from_block, as_json)


# ---------------------------------------------------------------------- output and errors


class Out:
    """Human output through rich, or JSON lines on stdout; errors on stderr."""

    def __init__(self, as_json: bool):
        self.json = as_json
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False)
        return self._console

    def emit(self, obj: dict[str, Any], human: Callable[[Console], None] | None = None) -> None:
        if self.json:
            print(json.dumps(obj, default=_jsonable), flush=True)
        elif human is not None:
            human(self.console)

    def fail(self, message: str, code: int, kind: str) -> NoReturn:
        if self.json:
            print(json.dumps({"ok": False, "error": message, "kind": kind}), flush=True)
        else:
            from rich.console import Console
            from rich.markup import escape

            # Not wrapped: an error is one line a user can copy or grep.
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"[bold red]error:[/] {escape(message)}"
            )
        raise typer.Exit(code)


def _jsonable(o: Any) -> Any:
    if isinstance(o, bytes):
        return "0x" + o.hex()
    if hasattr(o, "to_json"):
        return o.to_json()
    if hasattr(o, "name"):
        return o.name
    return str(o)


def _classify(exc: Exception) -> tuple[int, str]:
    """Exit code and kind for an exception the commands let through."""
    from metascheduler.audit.audit import AuditError
    from metascheduler.chain.errors import ChainError, RevertError, RpcUnavailable
    from metascheduler.client.errors import ClientError, InsufficientCredits, NotFound
    from metascheduler.keys import KeyLoadError
    from metascheduler.spec import SpecError

    table: list[tuple[type[Exception], int, str]] = [
        (SpecError, EXIT_USAGE, "invalid-spec"),
        (KeyLoadError, EXIT_USAGE, "key"),
        (UsageError, EXIT_USAGE, "usage"),
        (RpcUnavailable, EXIT_RPC, "rpc-unavailable"),
        (InsufficientCredits, EXIT_FAILED, "insufficient-credits"),
        (NotFound, EXIT_FAILED, "not-found"),
        (ClientError, EXIT_FAILED, "refused"),
        (AuditError, EXIT_FAILED, "not-found"),
        (RevertError, EXIT_FAILED, "revert"),
        (ChainError, EXIT_FAILED, "chain"),
    ]
    for cls, code, kind in table:
        if isinstance(exc, cls):
            if isinstance(exc, RevertError) and exc.name == "JobNotFound":
                return EXIT_FAILED, "not-found"
            return code, kind
    raise exc


F = TypeVar("F", bound=Callable[..., Any])


def handled(fn: F) -> F:
    """Turns the library's errors into a message saying what failed and what to do, and an
    exit code; anything unexpected keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        root = _settings(ctx) if isinstance(ctx, typer.Context) else Settings()
        out = Out(bool(kwargs.get("as_json")) or root.json)
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            code, kind = _classify(exc)
            out.fail(str(exc), code, kind)

    return wrapper  # type: ignore[return-value]


def _settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()


def _out(ctx: typer.Context, as_json: bool) -> Out:
    return Out(as_json or _settings(ctx).json)


def _units(text: str, what: str) -> int:
    try:
        units = billing.to_units(text)
    except (ValueError, ArithmeticError):
        raise UsageError(
            f"{what} {text!r} is not an amount of credits: write a number such as 12.5 "
            f"(at most {billing.CREDIT_DECIMALS} decimals)"
        ) from None
    if units <= 0:
        raise UsageError(f"{what} must be above zero (got {text})")
    return units


def _address_arg(text: str | None, what: str) -> str | None:
    """An address typed on the command line, checked before anything is read or sent."""
    from metascheduler.chain.types import ADDRESS_HINT, is_typed_address

    if text is not None and not is_typed_address(text):
        raise UsageError(f"{what} {text!r} is not an address: {ADDRESS_HINT}")
    return text


def _c(units: int | None) -> str:
    return "-" if units is None else billing.from_units(units)


def _t(ts: int | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------- keys and connections


def _env_value(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise UsageError(f"environment variable {name} (named for the {what}) is not set or empty")
    return value


def _password(s: Settings, *, confirm: bool) -> str:
    if s.password_env:
        return _env_value(s.password_env, "keystore password")
    pw: str = typer.prompt(
        "Keystore password", hide_input=True, confirmation_prompt=confirm, err=True
    )
    return pw


def _keystore_path(s: Settings) -> Path:
    return s.keystore or DEFAULT_KEYSTORE


def _account(s: Settings) -> LocalAccount | None:
    from metascheduler.keys import account_from_secret, load_keystore

    if s.key_env:
        return account_from_secret(_env_value(s.key_env, "private key"))
    path = _keystore_path(s)
    if s.keystore is None and not path.exists():
        return None
    return load_keystore(path, _password(s, confirm=False))


def _client(ctx: typer.Context, *, wallet: bool = True) -> Client:
    from metascheduler.client import Client
    from metascheduler.keys import refuse_dev_key_off_devnet

    s = _settings(ctx)
    if not s.market:
        raise UsageError("no market address: give --market or set MS_MARKET_ADDRESS")
    account = _account(s) if wallet else None
    if wallet and account is None:
        raise UsageError(
            f"this needs a wallet and none was found at {DEFAULT_KEYSTORE}: create one "
            "(`metascheduler wallet create`), or give --keystore or --key-env"
        )
    client = Client.connect(s.rpc_url, s.market, account, from_block=s.from_block)
    if account is not None:
        refuse_dev_key_off_devnet(account, client.chain_id())
    return client


# ---------------------------------------------------------------------- wallet


def _new_keystore_path(s: Settings) -> Path:
    """The keystore path to write, refusing to overwrite an existing wallet."""
    path = _keystore_path(s)
    if path.exists():
        raise UsageError(
            f"keystore {path} exists; refusing to overwrite it: give another --keystore"
        )
    return path


@wallet_app.command("create")
@handled
def wallet_create(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create a new key, saved encrypted in the keystore."""
    from eth_account import Account

    from metascheduler.keys import save_keystore

    s = _settings(ctx)
    path = _new_keystore_path(s)
    acct = Account.create()
    save_keystore(acct, path, _password(s, confirm=True))
    _out(ctx, as_json).emit(
        {"ok": True, "address": acct.address, "keystore": str(path)},
        lambda c: c.print(f"created wallet [bold]{acct.address}[/] in {path}"),
    )


@wallet_app.command("import")
@handled
def wallet_import(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Encrypt an existing private key into the keystore (the key from --key-env, or a hidden
    prompt)."""
    from metascheduler.keys import account_from_secret, save_keystore

    s = _settings(ctx)
    path = _new_keystore_path(s)
    if s.key_env:
        secret = _env_value(s.key_env, "private key")
    else:
        secret = typer.prompt("Private key (hex, hidden)", hide_input=True, err=True)
    acct = account_from_secret(secret)
    save_keystore(acct, path, _password(s, confirm=True))
    _out(ctx, as_json).emit(
        {"ok": True, "address": acct.address, "keystore": str(path)},
        lambda c: c.print(f"imported wallet [bold]{acct.address}[/] into {path}"),
    )


@wallet_app.command("address")
@handled
def wallet_address(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the wallet's address."""
    acct = _account(_settings(ctx))
    if acct is None:
        raise UsageError(f"no keystore at {DEFAULT_KEYSTORE}: `metascheduler wallet create`")
    _out(ctx, as_json).emit({"ok": True, "address": acct.address}, lambda c: c.print(acct.address))


# ---------------------------------------------------------------------- credits


@credits_app.command("balance")
@handled
def credits_balance(
    ctx: typer.Context,
    account: Annotated[
        str | None, typer.Option("--account", help="Another address (default: yours).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Credits in your wallet and in the market."""
    account = _address_arg(account, "--account")
    client = _client(ctx, wallet=account is None)
    b = client.balance(account)

    def human(c: Console) -> None:
        c.print(f"account  {b.account}")
        c.print(f"wallet   {_c(b.wallet)} credits")
        c.print(f"market   {_c(b.market)} credits (free to lock in jobs or withdraw)")
        c.print(f"gas      {b.gas_wei / 1e18:.6f} (native coin)")

    _out(ctx, as_json).emit({"ok": True, **b.to_json()}, human)


@credits_app.command("deposit")
@handled
def credits_deposit(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="Credits, e.g. 12.5")],
    as_json: JsonOpt = False,
) -> None:
    """Move credits from your wallet into the market (with a permit where possible)."""
    units = _units(amount, "the deposit")
    d = _client(ctx).deposit(units)
    _out(ctx, as_json).emit(
        {"ok": True, **d.to_json()},
        lambda c: c.print(f"deposited {_c(d.amount)} credits ({d.method})"),
    )


@credits_app.command("withdraw")
@handled
def credits_withdraw(
    ctx: typer.Context,
    amount: Annotated[str, typer.Argument(help="Credits, e.g. 12.5")],
    as_json: JsonOpt = False,
) -> None:
    """Move credits from the market back to your wallet."""
    units = _units(amount, "the withdrawal")
    _client(ctx).withdraw(units)
    _out(ctx, as_json).emit(
        {"ok": True, "amount": units}, lambda c: c.print(f"withdrew {_c(units)} credits")
    )


@credits_app.command("faucet")
@handled
def credits_faucet(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Draw free credits into your wallet (local devnets only)."""
    got = _client(ctx).faucet()
    _out(ctx, as_json).emit(
        {"ok": True, "amount": got},
        lambda c: c.print(f"the faucet gave {_c(got)} credits (now deposit them)"),
    )


# ---------------------------------------------------------------------- jobs


@job_app.command("submit")
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
    escrow_u = _units(escrow, "--escrow")
    price_u = _units(max_price, "--max-price")
    job_id = _client(ctx).submit(job_spec, escrow_u, price_u)
    minutes = escrow_u // price_u
    _out(ctx, as_json).emit(
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
            f"submitted job [bold]{job_id}[/] ({job_spec.name}): escrow {_c(escrow_u)} credits, "
            f"at most {_c(price_u)} credits/min (at least {minutes} min at that price).\n"
            f"follow it: metascheduler job watch {job_id}"
        ),
    )


def _job_table(info: JobInfo) -> RenderableType:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("job", f"{info.job_id}  [bold]{info.state.name}[/]")
    t.add_row("customer", info.customer)
    t.add_row("provider", info.provider or "-")
    price = "-" if info.price_per_minute is None else f"{_c(info.price_per_minute)} credits/min"
    t.add_row("price", price + (f" (fee {info.fee_bps} bps)" if info.fee_bps else ""))
    t.add_row("escrow", f"{_c(info.escrow)} credits")
    t.add_row("spent", f"{_c(info.spent)} credits")
    if info.escrow:
        t.add_row("", ProgressBar(total=info.escrow, completed=info.spent, width=30))
    if info.terminal:
        t.add_row(
            "bill",
            f"paid {_c(info.paid)}, fee {_c(info.fee)}, refunded {_c(info.refunded)}"
            + (f"; exit code {info.exit_code}" if info.exit_code not in (None, -1) else ""),
        )
        t.add_row("ended", _t(info.since))
    else:
        t.add_row("remaining", f"{_c(info.remaining)} credits")
        t.add_row("since", _t(info.since))
        if info.funded_until is not None:
            left = info.funded_until - info.chain_time
            t.add_row("funded until", f"{_t(info.funded_until)} ({max(left, 0)} s from now)")
    t.add_row("chain time", f"{_t(info.chain_time)} (block {info.block})")
    return t


@job_app.command("status")
@handled
def job_status(ctx: typer.Context, job_id: int, as_json: JsonOpt = False) -> None:
    """A job's state and the credits it has spent so far."""
    info = _client(ctx, wallet=False).status(job_id)
    _out(ctx, as_json).emit({"ok": True, **info.to_json()}, lambda c: c.print(_job_table(info)))


@job_app.command("list")
@handled
def job_list(
    ctx: typer.Context,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only jobs in this state (repeatable).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Everyone's jobs, not only yours.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Your jobs (or everyone's), by id."""
    from metascheduler.chain.types import JobStatus

    wanted = []
    for name in state or []:
        try:
            wanted.append(JobStatus[name.upper().replace("-", "_")])
        except KeyError:
            raise UsageError(
                f"unknown state {name!r}: use one of {', '.join(s.name for s in JobStatus)}"
            ) from None
    jobs = _client(ctx, wallet=not all_).list(mine=not all_, states=wanted or None)

    def human(c: Console) -> None:
        from rich.table import Table

        t = Table("job", "state", "provider", "price/min", "escrow", "spent", "since")
        for j in jobs:
            t.add_row(
                str(j.job_id),
                j.state.name,
                (j.provider or "-")[:10],
                _c(j.price_per_minute),
                _c(j.escrow),
                _c(j.spent),
                _t(j.since),
            )
        c.print(t if jobs else "no jobs")

    _out(ctx, as_json).emit({"ok": True, "jobs": [j.to_json() for j in jobs]}, human)


@job_app.command("watch")
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
    client = _client(ctx, wallet=False)
    out = _out(ctx, as_json)
    updates = client.watch(job_id, poll_s=poll, timeout_s=timeout)
    if out.json:
        for info in updates:
            out.emit({"ok": True, **info.to_json()})
        return
    from rich.live import Live

    with Live(console=out.console, auto_refresh=False) as live:
        for info in updates:
            live.update(_job_table(info), refresh=True)


@job_app.command("cancel")
@handled
def job_cancel(ctx: typer.Context, job_id: int, as_json: JsonOpt = False) -> None:
    """Cancel a live job: billed its running time only, the rest refunded."""
    info = _client(ctx).cancel(job_id)
    _out(ctx, as_json).emit(
        {"ok": True, **info.to_json()},
        lambda c: c.print(
            f"job {job_id} cancelled: billed {_c(info.spent)} credits, refunded {_c(info.refunded)}"
        ),
    )


@job_app.command("top-up")
@handled
def job_top_up(
    ctx: typer.Context,
    job_id: int,
    amount: Annotated[str, typer.Argument(help="Credits to add to the job's escrow.")],
    as_json: JsonOpt = False,
) -> None:
    """Add credits to a live job's escrow."""
    units = _units(amount, "the top-up")
    escrow = _client(ctx).top_up(job_id, units)
    _out(ctx, as_json).emit(
        {"ok": True, "job_id": job_id, "amount": units, "escrow": escrow},
        lambda c: c.print(f"job {job_id}: escrow now {_c(escrow)} credits"),
    )


@job_app.command("history")
@handled
def job_history(ctx: typer.Context, job_id: int, as_json: JsonOpt = False) -> None:
    """A job's timeline from its on-chain events."""
    steps = _client(ctx, wallet=False).history(job_id)
    _out(ctx, as_json).emit(
        {"ok": True, "job_id": job_id, "timeline": [s.to_json() for s in steps]},
        lambda c: c.print(_timeline(steps)),
    )


_MOVED = {
    "customer_to_escrow": "escrow",
    "to_provider": "provider",
    "to_fees": "fees",
    "to_customer": "customer",
}


def _timeline(steps: list[Any], width: int | None = None) -> RenderableType:
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
    t.add_column("state", no_wrap=True)
    t.add_column("credits moved", no_wrap=True)
    if wide:
        t.add_column("note", ratio=1)
    notes = []
    for s in steps:
        moved = "\n".join(f"{_MOVED.get(k, k)} +{_c(v)}" for k, v in s.moved.items() if v)
        state = s.to_state  # the state it left is the row above
        when = datetime.fromtimestamp(s.time, UTC).strftime("%m-%d %H:%M:%S")
        row = [str(s.block), when, s.event.removeprefix("Job"), state, moved or "-"]
        if wide:
            t.add_row(*row, s.note)
        else:
            t.add_row(*row)
            if s.note:
                notes.append(Text(f"block {s.block}: {s.note}"))
    return t if wide else Group(t, *notes)


# ---------------------------------------------------------------------- providers


@provider_app.command("register")
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
        return 0 if text.strip() in ("0", "0.0") else _units(text, what)

    hw = Hardware(nodes, cpus, gpus, mem_mb)
    prices = Prices(
        price(cpu_price, "--cpu-price"),
        price(gpu_price, "--gpu-price"),
        price(gb_price, "--gb-price"),
    )
    client = _client(ctx)
    tx = client.register_provider(hw, prices, label or [])
    info = client.provider()
    _out(ctx, as_json).emit(
        {"ok": True, "tx": tx, **info.to_json()},
        lambda c: c.print(
            f"provider {info.address} registered: {info.status} "
            "(an admin must approve it before it gets jobs)"
        ),
    )


@provider_app.command("status")
@handled
def provider_status(
    ctx: typer.Context,
    address: Annotated[str | None, typer.Argument(help="Provider (default: your wallet).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A provider's standing, hardware, prices, labels and market balance."""
    address = _address_arg(address, "provider")
    info = _client(ctx, wallet=address is None).provider(address)

    def human(c: Console) -> None:
        hw, p = info.hardware, info.prices
        c.print(f"provider  {info.address}  [bold]{info.status}[/]")
        c.print(f"hardware  {hw.nodes} nodes, {hw.cpus} CPUs, {hw.gpus} GPUs, {hw.mem_mb} MB")
        c.print(f"prices    {_c(p.cpu)}/CPU-min, {_c(p.gpu)}/GPU-min, {_c(p.gb)}/GB-min (credits)")
        c.print(f"labels    {', '.join(info.labels) or '-'}")
        c.print(f"balance   {_c(info.balance)} credits in the market")

    _out(ctx, as_json).emit({"ok": True, **info.to_json()}, human)


# ---------------------------------------------------------------------- audit


@audit_app.command("job")
@handled
def audit_job_cmd(ctx: typer.Context, job_id: int, as_json: JsonOpt = False) -> None:
    """A job's timeline and whether its bill follows the contract's rules (exit 1 if not)."""
    from metascheduler.audit import audit_job

    client = _client(ctx, wallet=False)
    report = audit_job(client.market, job_id, from_block=client.from_block)
    _out(ctx, as_json).emit(report.to_json(), lambda c: _print_job_audit(c, report))
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _print_job_audit(c: Console, a: JobAudit) -> None:
    c.print(_timeline(a.steps))
    if a.expected and a.actual:
        e, x = a.expected, a.actual
        c.print(
            f"bill: paid {_c(x.paid)} + fee {_c(x.fee)} + refunded {_c(x.refunded)}; the rules "
            f"give paid {_c(e.paid)} + fee {_c(e.fee)} + refunded {_c(e.refunded)}"
            + (f" ({a.billed_seconds} s metered)" if a.billed_seconds is not None else "")
        )
    _print_verdict(c, a.ok, a.discrepancies, f"job {a.job_id} ({a.state})")


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


@audit_app.command("account")
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

    address = _address_arg(address, "account")
    client = _client(ctx, wallet=address is None)
    who = address if address is not None else client.address
    report = audit_account(client.market, who, from_block=client.from_block)
    _out(ctx, as_json).emit(report.to_json(), lambda c: _print_account_audit(c, report, last))
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
        t.add_row(str(m.block), when, m.kind, job, f"{sign}{_c(abs(m.amount))}", _c(m.balance))
    if shown:
        c.print(t)
    totals = a.totals()
    c.print(
        "totals: "
        + (
            ", ".join(f"{_KINDS.get(k, k)} {_c(abs(v))}" for k, v in totals.items())
            or "no movements"
        )
    )
    c.print(
        f"balance {_c(a.balance)} credits in the market (its events sum to {_c(a.rebuilt)}); "
        f"{_c(a.in_escrow)} in live jobs' escrow; {_c(a.wallet)} in the wallet"
    )
    _print_verdict(c, a.ok, a.discrepancies, f"account {a.account}")


@audit_app.command("all")
@handled
def audit_all_cmd(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Conservation of credits and every job's bill (exit 1 on any discrepancy)."""
    from metascheduler.audit import audit_all

    client = _client(ctx, wallet=False)
    out = _out(ctx, as_json)
    if out.json:
        report = audit_all(client.market, from_block=client.from_block)
    else:
        from rich.console import Console

        # A spinner on stderr (shown on a terminal only) with the step under way.
        with Console(stderr=True).status("auditing") as status:
            report = audit_all(
                client.market,
                from_block=client.from_block,
                progress=lambda m: status.update(f"auditing: {m}"),
            )
    out.emit(report.to_json(), lambda c: _print_grid_audit(c, report))
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


def _print_grid_audit(c: Console, g: GridAudit) -> None:
    d = g.to_json()
    c.print(f"market {g.market}, blocks {g.from_block}-{g.block}")
    c.print(
        f"jobs: {d['jobs']} ({d['jobs_ok']} billed by the rules); "
        + ", ".join(f"{k} {v}" for k, v in d["job_states"].items())
    )
    c.print(
        f"credits held {_c(g.token_held)} = balances {_c(g.balances_total)} ({g.accounts} "
        f"accounts) + live escrows {_c(g.live_escrow)} + fees {_c(g.accrued_fees)}"
    )
    _print_verdict(c, g.ok, g.all_discrepancies, "grid")


# ---------------------------------------------------------------------- services (thin wirings)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="Settings file (TOML); the environment (MS_*) too.")
]


def _service(module: str, function: str, what: str) -> Callable[..., int]:
    """The service's entry point, imported only when asked for."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise UsageError(
                f"{what} is not part of this installation ({module} is missing)"
            ) from None
        raise
    fn: Callable[..., int] = getattr(mod, function)
    return fn


@oracle_app.command("run")
@handled
def oracle_run(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run the oracle: ingest the chain, place jobs, keep them honest."""
    fn = _service("metascheduler.oracle.service", "run_oracle_command", "the oracle")
    raise typer.Exit(fn(config) or 0)


@agent_app.command("run")
@handled
def agent_run(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run a provider's agent over its cluster."""
    fn = _service("metascheduler.agent.service", "run_agent_command", "the agent")
    raise typer.Exit(fn(config) or 0)


@api_app.command("run")
@handled
def api_run(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """Run the read API and dashboard."""
    fn = _service("metascheduler.api.service", "run_api_command", "the API")
    raise typer.Exit(fn(config) or 0)


@app.command("sim")
@handled
def sim(
    ctx: typer.Context,
    trace: Annotated[str, typer.Argument(help="SWF trace, plain or .gz")],
    clusters: Annotated[
        str, typer.Option("--clusters", help="Processors per cluster, e.g. 50,25,25 or 50@3,25@2")
    ],
    policy: Annotated[
        str | None, typer.Option("--policy", help="A policy, a comma list, or all.")
    ] = None,
    plot: Annotated[str | None, typer.Option("--plot", help="Draw the policies (PNG).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random policy.")] = 0,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N jobs.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a workload trace on simulated clusters through a placement policy."""
    fn = _service("metascheduler.sim.cli", "run_sim_command", "the simulator")
    as_json = as_json or _settings(ctx).json
    raise typer.Exit(fn(trace, clusters, policy, as_json, plot, seed, limit) or 0)


@devnet_app.command("up")
@handled
def devnet_up(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Run the demo, audit, and exit (0 when all is well).")
    ] = False,
) -> None:
    """A whole local grid: chain, contracts, oracle, agents, API and demo jobs."""
    fn = _service("metascheduler.devnet.demo", "run_devnet_command", "the devnet demo")
    raise typer.Exit(fn(once) or 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
