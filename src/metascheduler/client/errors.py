"""Errors of the SDK: each says what failed, with which input, and what to do."""

from __future__ import annotations

from metascheduler import billing
from metascheduler.errors import MetaschedulerError


class ClientError(MetaschedulerError):
    """A request the SDK refused or could not complete; nothing was sent if it says so."""

    kind = "refused"


class InsufficientCredits(ClientError):
    """Not enough credits where the request needs them. Raised before any transaction."""

    kind = "insufficient-credits"

    def __init__(self, what: str, where: str, have: int, needed: int, hint: str):
        self.what = what
        self.where = where  # "wallet" or "market"
        self.have = have
        self.needed = needed
        self.missing = needed - have
        c = billing.from_units
        super().__init__(
            f"{what} needs {c(needed)} credits in your {where} balance, which holds {c(have)}: "
            f"{c(self.missing)} credits are missing. {hint}".rstrip()
        )


class NotFound(ClientError):
    """No such job, provider or contract."""

    kind = "not-found"


class WatchTimeout(ClientError):
    """A watched job did not reach a terminal state in time."""
