"""Python mirrors of the contract's enums and structs (one concept, one place per language)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Any, NamedTuple

from eth_abi import encode
from eth_utils import is_address, is_checksum_address, keccak, to_checksum_address

#: What a person should type where `is_typed_address` refused their text.
ADDRESS_HINT = "give 0x and 40 hex digits (in mixed case, with a valid checksum)"


@lru_cache(maxsize=65_536)
def checksum(addr: str) -> str:
    """Checksummed address, cached: a grid has far fewer parties than logs."""
    return to_checksum_address(addr)


def is_typed_address(text: str) -> bool:
    """0x and 40 hex digits, in one case, or in mixed case with a valid EIP-55 checksum: a
    mixed-case address carries a checksum so that a mistyped character is caught."""
    if not is_address(text):
        return False
    digits = text.removeprefix("0x").removeprefix("0X")
    return digits.islower() or digits.isupper() or is_checksum_address(text)


class JobStatus(IntEnum):
    """Mirrors `JobStatus` in IJobMarket.sol; `tests/unit/test_artifacts.py` proves they agree."""

    PENDING = 0
    META_SCHEDULED = 1
    SCHEDULED = 2
    RUNNING = 3
    CANCELLED = 4
    FINISHED = 5
    FAILED = 6
    OUT_OF_CREDITS = 7

    @property
    def terminal(self) -> bool:
        return self >= JobStatus.CANCELLED

    @property
    def placed(self) -> bool:
        return self in (JobStatus.META_SCHEDULED, JobStatus.SCHEDULED)


class ProviderStatus(IntEnum):
    NONE = 0
    REGISTERED = 1
    APPROVED = 2
    BANNED = 3


class ProviderAction(IntEnum):
    ACCEPT = 0
    START = 1
    COMPLETE = 2


#: The result digest of a completion that commits to no results.
NO_DIGEST = bytes(32)
#: A step's time meaning "now": the contract clamps a time after the block's to the block's, and
#: this one is after every block time a job record holds (32 bits).
AT_NOW = 2**32 - 1


class ProviderStep(NamedTuple):
    """One item of a ``providerBatch``: a provider's step on one job. ``exit_code`` and
    ``result_digest`` (32 bytes, committing to the job's results in JobEnded) are read for
    COMPLETE only. ``at`` is the backend's time of the step in the chain's clock (Unix seconds):
    its start for START (metering starts there, no earlier than the acceptance), its end for
    COMPLETE (billed up to there, no earlier than the start); the contract clamps it to the
    block's time at the latest. ACCEPT ignores it."""

    job_id: int
    action: ProviderAction
    exit_code: int = 0
    result_digest: bytes = NO_DIGEST
    at: int = AT_NOW


class SkippedItem(NamedTuple):
    """A batch item the contract skipped (``BatchItemSkipped``): its position in the batch (the
    event's ``index``; a tuple's ``index`` is a method), its job, and the contract's error in
    words."""

    position: int
    job_id: int
    error: str


@dataclass(frozen=True)
class Terms:
    """What a job was requested under; the contract stores the first 16 bytes of
    keccak256(abi.encode(Terms)), its tag."""

    spec_hash: bytes
    cpus: int
    gpus: int
    mem_mb: int
    max_price_per_minute: int

    def as_tuple(self) -> tuple[bytes, int, int, int, int]:
        return (self.spec_hash, self.cpus, self.gpus, self.mem_mb, self.max_price_per_minute)

    def hash(self) -> bytes:
        return keccak(encode(["(bytes32,uint32,uint32,uint32,uint256)"], [self.as_tuple()]))

    def tag(self) -> bytes:
        """What the contract stores of the terms: the first 16 bytes of their hash."""
        return self.hash()[:16]

    @classmethod
    def for_spec(
        cls, spec: bytes, cpus: int, gpus: int, mem_mb: int, max_price_per_minute: int
    ) -> Terms:
        return cls(keccak(spec), cpus, gpus, mem_mb, max_price_per_minute)


class Placement(NamedTuple):
    """One item of ``placeJobs`` (the contract's ``Placement``): a job, the provider it goes to,
    the terms it was requested under, which the contract checks against the job's tag, and the
    price the placer quoted (the contract refuses the placement if the provider's is now higher;
    None: no bound tighter than the job's max price)."""

    job_id: int
    provider: str
    terms: Terms
    quoted_price: int | None = None

    def quote(self) -> int:
        """The quoted price as the contract takes it."""
        if self.quoted_price is None:
            return self.terms.max_price_per_minute
        return self.quoted_price


@dataclass(frozen=True)
class Hardware:
    nodes: int
    cpus: int
    gpus: int
    mem_mb: int


@dataclass(frozen=True)
class Prices:
    """Credit units per minute of one CPU, one GPU, one GB of memory."""

    cpu: int
    gpu: int
    gb: int


@dataclass(frozen=True)
class JobView:
    job_id: int
    customer: str
    provider: str
    status: JobStatus
    since: int
    price_per_minute: int
    fee_bps: int
    escrow: int
    terms_tag: bytes  # the first 16 bytes of Terms.hash()

    @classmethod
    def from_call(cls, job_id: int, v: Any) -> JobView:
        """The view from what `getJob(job_id)` returned (a tuple in the ABI's order)."""
        return cls(job_id, v[0], v[1], JobStatus(v[2]), v[3], v[4], v[5], v[6], bytes(v[7]))


ZERO_ADDRESS = "0x" + "00" * 20
