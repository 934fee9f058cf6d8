"""The root options every command reads, and the wrapper that turns errors into exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from metascheduler.cli.errors import classify
from metascheduler.cli.output import Out

DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_KEYSTORE = Path.home() / ".metascheduler" / "keystore.json"

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object as the last line (for scripts).")
]
AmountArg = Annotated[str, typer.Argument(help="Credits, e.g. 12.5")]


@dataclass
class Settings:
    rpc_url: str = DEFAULT_RPC
    market: str | None = None
    keystore: Path | None = None
    password_env: str | None = None
    key_env: str | None = None
    from_block: int | None = None
    json: bool = False
    deployment: Path | None = None
    api_url: str = DEFAULT_API


def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()


def out(ctx: typer.Context, as_json: bool) -> Out:
    return Out(as_json or settings(ctx).json)


F = TypeVar("F", bound=Callable[..., Any])


def handled(fn: F) -> F:
    """Turns the library's errors into a message saying what failed and what to do, and an
    exit code; anything unexpected keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        root = settings(ctx) if isinstance(ctx, typer.Context) else Settings()
        output = Out(bool(kwargs.get("as_json")) or root.json)
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            code, kind = classify(exc)
            output.fail(str(exc), code, kind)

    return wrapper  # type: ignore[return-value]
