"""What the SDK returns: plain frozen records, amounts in integer credit units (6 decimals)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from metascheduler.chain.types import Hardware, JobStatus, Prices


@dataclass(frozen=True)
class Balance:
    account: str
    wallet: int  # credit tokens in the wallet
    market: int  # credits deposited in the market, free to lock in jobs or withdraw
    gas_wei: int  # native coin for transaction fees

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Deposit:
    amount: int
    method: str  # "permit", "approve+deposit" or "deposit" (allowance already there)
    txs: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobInfo:
    """A job as the chain holds it at `block`, with the credits it has spent so far.

    `spent` is paid + fee: for a running job, what `billing.cost` gives for the block time
    elapsed since it started (what cancelling now would bill); for an ended job, its bill."""

    job_id: int
    status: JobStatus
    customer: str
    provider: str | None
    escrow: int  # requested + top-ups
    price_per_minute: int | None
    fee_bps: int
    since: int  # block time the job entered its status (0 while PENDING)
    chain_time: int  # block time of `block`
    block: int
    spent: int
    funded_until: int | None = None  # RUNNING only: when OUT_OF_CREDITS becomes possible
    exit_code: int | None = None
    paid: int | None = None
    fee: int | None = None
    refunded: int | None = None

    @property
    def state(self) -> JobStatus:
        """The job's status under its earlier name, kept for callers that read it."""
        return self.status

    @property
    def remaining(self) -> int:
        return 0 if self.status.terminal else self.escrow - self.spent

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = d["state"] = self.status.name  # "state": the earlier key, kept
        d["remaining"] = self.remaining
        return d


@dataclass(frozen=True)
class ProviderInfo:
    address: str
    status: str
    hardware: Hardware
    prices: Prices
    labels: list[str] = field(default_factory=list)
    balance: int = 0  # earnings (and deposits) held in the market

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
