"""The ways results are refused, each with its message in words."""

from __future__ import annotations

from metascheduler.errors import MetaschedulerError


class ResultsError(MetaschedulerError, ValueError):
    """Results could not be sealed, checked or opened; the message says why and what to do."""

    kind = "results"


class ChunkRefused(ResultsError):
    """A log chunk failed a check. `reason` is a short label (for the API's status and metrics):
    malformed, wrong_deployment, wrong_job, forged, replayed, out_of_order, gap."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class UnsafeArchive(ResultsError):
    """An output archive holds a member that would land outside the destination (or is a link
    or a device); nothing of it is written."""

    kind = "unsafe-archive"


class Tampered(ResultsError):
    """Stored results do not match their digest, or their ciphertext does not authenticate."""

    kind = "tampered"
