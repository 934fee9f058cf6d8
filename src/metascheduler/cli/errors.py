"""Exit codes, and how an error the commands let through becomes one of them.

The codes and the error root live in `metascheduler.errors`, shared with the services; the names
here are the CLI's public ones."""

from __future__ import annotations

from metascheduler.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    InputError,
    MetaschedulerError,
)
from metascheduler.errors import EXIT_UNREACHABLE as EXIT_RPC

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_RPC", "EXIT_USAGE", "UsageError", "classify"]


class UsageError(InputError):
    """Bad input from the user (exit 2)."""


def classify(exc: Exception) -> tuple[int, str]:
    """Exit code and kind for an exception the commands let through; anything that is not the
    project's own error is raised again, to keep its traceback."""
    from metascheduler.chain.errors import RevertError

    if isinstance(exc, RevertError) and exc.name == "JobNotFound":
        return EXIT_FAILED, "not-found"
    if isinstance(exc, MetaschedulerError):
        return exc.exit_code, exc.kind
    raise exc
