"""What an audit reports: a job's timeline, the bill the contract's rules give, and discrepancies.

Amounts are integer credit units (6 decimals; see metascheduler.billing), times are block
timestamps (seconds), so the JSON an auditor gets is exact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metascheduler.audit.results import ResultsCheck


@dataclass(frozen=True)
class Discrepancy:
    """One thing the chain's history or state does not agree with the contract's rules on."""

    check: str  # short name: "bill", "fee", "refund", "split", "transition", "state", ...
    message: str
    job_id: int | None = None
    block: int | None = None
    tx: str | None = None
    account: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Step:
    """One event of a job, with the credits it moved."""

    block: int
    time: int
    tx: str
    log_index: int
    event: str
    from_status: str | None
    to_status: str
    escrow: int  # the job's escrow after this step
    provider: str | None = None
    price_per_minute: int | None = None
    moved: dict[str, int] = field(default_factory=dict)
    note: str = ""

    # The earlier names of the two statuses, kept for callers that read them.
    @property
    def from_state(self) -> str | None:
        return self.from_status

    @property
    def to_state(self) -> str:
        return self.to_status

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["from_state"], d["to_state"] = self.from_status, self.to_status  # earlier keys, kept
        return d


@dataclass(frozen=True)
class Movement:
    """One change of an account's market balance, as its event gives it."""

    block: int
    time: int  # the block's timestamp (0 when not read)
    tx: str
    log_index: int
    kind: str  # deposit, withdrawal, escrow, top-up, payment (to a provider), refund
    job_id: int | None
    amount: int  # signed: what the balance gained
    balance: int  # the balance rebuilt from events, after this movement

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def movement_totals(movements: list[Movement]) -> dict[str, int]:
    """Movements summed by kind (signed, as they moved the balance), in order of first use."""
    out: dict[str, int] = {}
    for m in movements:
        out[m.kind] = out.get(m.kind, 0) + m.amount
    return out


@dataclass(frozen=True)
class Bill:
    cost: int  # what the provider's time is worth, capped by the escrow: paid + fee
    fee: int
    paid: int
    refunded: int

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class JobAudit:
    job_id: int
    status: str = "UNKNOWN"
    customer: str | None = None
    provider: str | None = None
    escrow_requested: int = 0
    request_fee: int = 0  # paid to the platform at request, not part of the escrow
    top_ups: int = 0
    escrow: int = 0  # requested + top-ups: what the split at the end must sum to
    max_price_per_minute: int = 0
    price_per_minute: int | None = None
    fee_bps: int | None = None
    started_at: int | None = None
    ended_at: int | None = None
    exit_code: int | None = None
    #: what the provider's completion committed to (0x hex), None if it committed to nothing
    result_digest: str | None = None
    #: the stored results checked against `result_digest` (None: not checked)
    results_check: ResultsCheck | None = None
    expected: Bill | None = None
    actual: Bill | None = None
    steps: list[Step] = field(default_factory=list)
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    @property
    def state(self) -> str:
        """The job's status under its earlier name, kept for callers that read it."""
        return self.status

    @property
    def billed_seconds(self) -> int | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def flag(self, check: str, message: str, block: int | None, tx: str | None = None) -> None:
        self.discrepancies.append(Discrepancy(check, message, self.job_id, block, tx))

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "ok": self.ok,
            "status": self.status,
            "state": self.status,  # the earlier key, kept
            "customer": self.customer,
            "provider": self.provider,
            "escrow_requested": self.escrow_requested,
            "request_fee": self.request_fee,
            "top_ups": self.top_ups,
            "escrow": self.escrow,
            "max_price_per_minute": self.max_price_per_minute,
            "price_per_minute": self.price_per_minute,
            "fee_bps": self.fee_bps,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "billed_seconds": self.billed_seconds,
            "exit_code": self.exit_code,
            "result_digest": self.result_digest,
            "results_check": self.results_check.to_json() if self.results_check else None,
            "expected": self.expected.to_json() if self.expected else None,
            "actual": self.actual.to_json() if self.actual else None,
            "timeline": [s.to_json() for s in self.steps],
            "discrepancies": [d.to_json() for d in self.discrepancies],
        }


@dataclass
class GridAudit:
    market: str
    credit: str
    block: int  # every state read is at this block
    from_block: int
    token_held: int = 0  # Credit.balanceOf(market)
    balances_total: int = 0  # sum of market.balanceOf over every account seen
    live_escrow: int = 0
    accrued_fees: int = 0
    #: credits that reached the market by plain transfer and were not yet swept (owed to nobody)
    surplus: int = 0
    accounts: int = 0
    #: jobs whose stored results were checked against their digest (None: no results source)
    results_checked: int | None = None
    jobs: list[JobAudit] = field(default_factory=list)
    discrepancies: list[Discrepancy] = field(default_factory=list)  # grid-wide ones

    @property
    def all_discrepancies(self) -> list[Discrepancy]:
        out = list(self.discrepancies)
        for j in self.jobs:
            out.extend(j.discrepancies)
        return out

    @property
    def ok(self) -> bool:
        return not self.all_discrepancies

    def jobs_by_status(self) -> dict[str, int]:
        """The audited jobs counted by their status (those that occur)."""
        return {
            s: sum(1 for j in self.jobs if j.status == s)
            for s in sorted({j.status for j in self.jobs})
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "market": self.market,
            "credit": self.credit,
            "block": self.block,
            "from_block": self.from_block,
            "token_held": self.token_held,
            "balances_total": self.balances_total,
            "live_escrow": self.live_escrow,
            "accrued_fees": self.accrued_fees,
            "surplus": self.surplus,
            "accounts": self.accounts,
            "jobs": len(self.jobs),
            "jobs_ok": sum(1 for j in self.jobs if j.ok),
            "jobs_by_status": self.jobs_by_status(),
            "job_states": self.jobs_by_status(),  # the earlier key, kept
            "bad_jobs": [j.job_id for j in self.jobs if not j.ok],
            "results_checked": self.results_checked,
            "results_mismatched": [
                j.job_id for j in self.jobs if j.results_check and not j.results_check.ok
            ],
            "discrepancies": [d.to_json() for d in self.all_discrepancies],
        }


@dataclass
class AccountAudit:
    """One account's credits in the market: every movement rebuilt from the events, and the
    balance they sum to checked against the contract's."""

    account: str
    market: str
    block: int  # every state read is at this block
    from_block: int
    balance: int = 0  # market.balanceOf(account) at `block`
    rebuilt: int = 0  # the sum of the movements
    in_escrow: int = 0  # escrow of the account's live jobs: locked, not in `balance`
    wallet: int = 0  # Credit.balanceOf(account): tokens outside the market
    movements: list[Movement] = field(default_factory=list)
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def totals(self) -> dict[str, int]:
        return movement_totals(self.movements)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "account": self.account,
            "market": self.market,
            "block": self.block,
            "from_block": self.from_block,
            "balance": self.balance,
            "rebuilt": self.rebuilt,
            "in_escrow": self.in_escrow,
            "wallet": self.wallet,
            "totals": self.totals(),
            "movements": [m.to_json() for m in self.movements],
            "discrepancies": [d.to_json() for d in self.discrepancies],
        }
