"""Every account's balance in the market, rebuilt from the credit events alone."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from metascheduler.audit.model import Discrepancy, Movement
from metascheduler.chain.events import ChainEvent


@dataclass
class Ledger:
    #: accounts (lower case) whose every movement is kept in `movements`: an account statement
    follow: frozenset[str] = frozenset()
    movements: list[Movement] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fees: int = 0
    #: credits the admin swept out of the market's surplus (plain transfers to it)
    swept: int = 0
    deposited: int = 0
    escrows: dict[int, int] = field(default_factory=dict)  # live jobs only
    #: account -> [(block, balance after that block)]: where to look when a balance disagrees
    trail: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    #: (account, block) -> job ids whose events moved the account's credits in that block
    touched_by: dict[tuple[str, int], set[int]] = field(default_factory=lambda: defaultdict(set))
    #: job id -> its customer (its account while it lives) and provider (while placed)
    customers: dict[int, str] = field(default_factory=dict)
    providers: dict[int, str | None] = field(default_factory=dict)
    problems: list[Discrepancy] = field(default_factory=list)

    def _move(
        self, account: str, delta: int, ev: ChainEvent, kind: str, job_id: int | None = None
    ) -> None:
        acct = account.lower()
        self.balances[acct] += delta
        if acct in self.follow:
            self.movements.append(
                Movement(
                    ev.block_number,
                    int(ev.block_time or 0),
                    ev.tx_hash,
                    ev.log_index,
                    kind,
                    job_id,
                    delta,
                    self.balances[acct],
                )
            )
        trail = self.trail[acct]
        if trail and trail[-1][0] == ev.block_number:
            trail[-1] = (ev.block_number, self.balances[acct])
        else:
            trail.append((ev.block_number, self.balances[acct]))
        if job_id is not None:
            self.touched_by[(acct, ev.block_number)].add(job_id)
        if self.balances[acct] < 0:
            self.problems.append(
                Discrepancy(
                    "negative-balance",
                    f"{ev.name} takes {account}'s balance below zero "
                    f"({self.balances[acct]} units) by its events",
                    job_id,
                    ev.block_number,
                    ev.tx_hash,
                    account,
                )
            )

    def apply(self, ev: ChainEvent) -> None:
        a = ev.args
        name = ev.name
        if name == "Deposited":
            self.deposited += int(a["amount"])
            self._move(a["account"], int(a["amount"]), ev, "deposit")
        elif name == "Withdrawn":
            self._move(a["account"], -int(a["amount"]), ev, "withdrawal")
        elif name == "FeesWithdrawn":
            self.fees -= int(a["amount"])
        elif name == "SurplusSwept":
            self.swept += int(a["amount"])
        elif name == "JobRequested":
            job = int(a["jobId"])
            self.customers[job] = str(a["customer"])
            self.escrows[job] = int(a["escrow"])
            self._move(self.customers[job], -int(a["escrow"]), ev, "escrow", job)
            fee = int(a.get("requestFee", 0))
            if fee:
                self.fees += fee
                self._move(self.customers[job], -fee, ev, "request fee", job)
        elif name == "JobToppedUp":
            job = int(a["jobId"])
            self.escrows[job] = self.escrows.get(job, 0) + int(a["amount"])
            self._move(self.customers.get(job, ""), -int(a["amount"]), ev, "top-up", job)
        elif name == "JobPlaced":
            self.providers[int(a["jobId"])] = str(a["provider"])
        elif name == "JobReturned":
            self.providers[int(a["jobId"])] = None
        elif name == "JobEnded":
            self._end(ev)

    def _end(self, ev: ChainEvent) -> None:
        a = ev.args
        job = int(a["jobId"])
        paid, fee, refunded = int(a["paid"]), int(a["fee"]), int(a["refunded"])
        self.escrows.pop(job, None)
        self.fees += fee
        provider = self.providers.get(job)
        if paid:
            if provider is None:
                self.problems.append(
                    Discrepancy(
                        "ledger",
                        f"job {job} paid {paid} units to a provider, but it is placed on none",
                        job,
                        ev.block_number,
                        ev.tx_hash,
                    )
                )
            else:
                self._move(provider, paid, ev, "payment", job)
        if refunded:
            self._move(self.customers.get(job, ""), refunded, ev, "refund", job)

    def escrow_of(self, account: str) -> int:
        """Escrow locked in the live jobs that `account` requested."""
        acct = account.lower()
        return sum(e for job, e in self.escrows.items() if self.customers[job].lower() == acct)
