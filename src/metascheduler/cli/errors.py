"""Exit codes, and the table that turns the library's errors into one of them."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_RPC = 0, 1, 2, 3


class UsageError(Exception):
    """Bad input from the user (exit 2)."""


def classify(exc: Exception) -> tuple[int, str]:
    """Exit code and kind for an exception the commands let through."""
    from metascheduler.audit.audit import AuditError
    from metascheduler.chain.deployment import DeploymentError
    from metascheduler.chain.errors import ChainError, RevertError, RpcUnavailable
    from metascheduler.client.errors import ClientError, InsufficientCredits, NotFound
    from metascheduler.keys import KeyLoadError
    from metascheduler.results.errors import ResultsError, Tampered, UnsafeArchive
    from metascheduler.results.http import ApiRefused, ApiUnavailable
    from metascheduler.spec import SpecError

    table: list[tuple[type[Exception], int, str]] = [
        (SpecError, EXIT_USAGE, "invalid-spec"),
        (KeyLoadError, EXIT_USAGE, "key"),
        (UsageError, EXIT_USAGE, "usage"),
        (DeploymentError, EXIT_USAGE, "deployment"),
        (RpcUnavailable, EXIT_RPC, "rpc-unavailable"),
        (InsufficientCredits, EXIT_FAILED, "insufficient-credits"),
        (NotFound, EXIT_FAILED, "not-found"),
        (ClientError, EXIT_FAILED, "refused"),
        (AuditError, EXIT_FAILED, "not-found"),
        (RevertError, EXIT_FAILED, "revert"),
        (ChainError, EXIT_FAILED, "chain"),
        (Tampered, EXIT_FAILED, "tampered"),
        (UnsafeArchive, EXIT_FAILED, "unsafe-archive"),
        (ResultsError, EXIT_FAILED, "results"),
        (ApiUnavailable, EXIT_RPC, "api-unavailable"),
        (ApiRefused, EXIT_FAILED, "refused"),
    ]
    for cls, code, kind in table:
        if isinstance(exc, cls):
            if isinstance(exc, RevertError) and exc.name == "JobNotFound":
                return EXIT_FAILED, "not-found"
            return code, kind
    raise exc
