"""The root of the project's errors, and the exit codes they carry.

Every error the library raises on purpose derives from `MetaschedulerError`, whose message says
what failed and what to do. Each class carries the exit code a process ends with when it lets
one through, so the CLI and every service (oracle, agent, API) end the same way for the same
cause: 2 for input to fix, 3 for an endpoint that does not answer, 1 for anything else.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class MetaschedulerError(Exception):
    """Something the project detected failed; the message says what and what to do.

    `exit_code` is the status a process ends with because of it; `kind` is the short label the
    CLI's `--json` output gives it."""

    exit_code: ClassVar[int] = EXIT_FAILED
    kind: ClassVar[str] = "failed"


class InputError(MetaschedulerError):
    """Input to fix before trying again: a spec, a setting, a key, a file, a flag."""

    exit_code = EXIT_USAGE
    kind = "usage"


class UnreachableError(MetaschedulerError):
    """An endpoint (the chain's RPC, the API, the object store) did not answer: try later."""

    exit_code = EXIT_UNREACHABLE
    kind = "unreachable"


def one_line(exc: BaseException) -> str:
    """The error's message on one line, for a process's last words."""
    return " | ".join(part.strip() for part in str(exc).splitlines() if part.strip())
