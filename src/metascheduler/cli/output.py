"""What the commands print: human output through rich, or JSON lines on stdout; errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from metascheduler import billing

if TYPE_CHECKING:
    from rich.console import Console

    from metascheduler.results.logchain import LogRecord


class Out:
    """One command's output: rich for people, one JSON object per line with --json."""

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
            print(json.dumps(obj, default=jsonable), flush=True)
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


def jsonable(o: Any) -> Any:
    if isinstance(o, bytes):
        return "0x" + o.hex()
    if hasattr(o, "to_json"):
        return o.to_json()
    if hasattr(o, "name"):
        return o.name
    return str(o)


def as_credits(units: int | None) -> str:
    """Credit units as credits, for people ("-" when unknown)."""
    return "-" if units is None else billing.from_units(units)


def as_utc(ts: int | None) -> str:
    """A block time as a UTC date and time ("-" when unset)."""
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def log_line(rec: LogRecord) -> None:
    """A job's line as the job wrote it (stdout to stdout, stderr to stderr, no markup); the
    provider's own messages go to stderr, marked."""
    if rec.agent:
        print(f"[provider] {rec.line}", file=sys.stderr, flush=True)
    elif rec.stream == "stderr":
        print(rec.line, file=sys.stderr, flush=True)
    else:
        print(rec.line, flush=True)
