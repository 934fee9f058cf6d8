"""The audit's rules over hand-written event histories: each rule can fail, and says where."""

from __future__ import annotations

from typing import Any

from metascheduler import billing
from metascheduler.audit.rules import History, replay_job
from metascheduler.chain.events import ChainEvent
from metascheduler.chain.types import JobStatus as S
from metascheduler.chain.types import Prices

CUST = "0x" + "c1" * 20
PROV = "0x" + "b2" * 20
PRICES = Prices(1_000, 0, 0)  # 2 CPUs: 2,000 units per minute
T0 = 1_000_000


class Chain:
    """Events of job 1, one per block; block n is at time T0 + 10 n unless told."""

    def __init__(self) -> None:
        self.events: list[ChainEvent] = []
        self.times: dict[int, int] = {}
        self.oracle_txs: set[str] = set()

    def add(self, name: str, at: int | None = None, **args: Any) -> ChainEvent:
        block = len(self.events) + 1
        self.times[block] = at if at is not None else T0 + 10 * block
        ev = ChainEvent(name, {"jobId": 1, **args}, "0xm", block, "0xb", f"0xt{block}", 0)
        self.events.append(ev)
        return ev

    def history(self, fee_bps: int = 0) -> History:
        h = History(self.times.__getitem__, lambda tx, job: 0 if tx in self.oracle_txs else None)
        h.price_changes[PROV.lower()] = [((0, 0), PRICES)]
        if fee_bps:
            h.fee_changes.append(((0, 1), fee_bps))
        return h

    def run(self, escrow: int, start: int) -> None:
        self.add(
            "JobRequested",
            customer=CUST,
            escrow=escrow,
            maxPricePerMinute=10_000,
            cpus=2,
            gpus=0,
            memMb=0,
            spec=b"{}",
        )
        self.add(
            "JobPlaced",
            provider=PROV,
            pricePerMinute=2_000,
            **{"from": S.PENDING, "to": S.META_SCHEDULED},
        )
        self.add("JobStatusChanged", **{"from": S.META_SCHEDULED, "to": S.SCHEDULED})
        self.add("JobStatusChanged", at=start, **{"from": S.SCHEDULED, "to": S.RUNNING})

    def end(self, to: S, at: int, paid: int, fee: int, refunded: int, code: int = -1) -> ChainEvent:
        return self.add(
            "JobEnded",
            at=at,
            paid=paid,
            fee=fee,
            refunded=refunded,
            exitCode=code,
            **{"from": S.RUNNING, "to": to},
        )


def checks(c: Chain, fee_bps: int = 0) -> list[tuple[str, int | None]]:
    return [(d.check, d.block) for d in replay_job(1, c.events, c.history(fee_bps)).discrepancies]


def test_an_honest_finish_with_a_fee_passes() -> None:
    c = Chain()
    c.run(10_000, start=T0 + 100)
    cost = billing.cost(price=2_000, elapsed_s=150, escrow=10_000)  # 5,000
    fee = billing.fee(cost, 300)
    c.end(S.FINISHED, T0 + 250, cost - fee, fee, 10_000 - cost, 0)
    a = replay_job(1, c.events, c.history(300))
    assert a.ok and a.expected == a.actual and a.billed_seconds == 150 and a.status == "FINISHED"
    assert [s.to_status for s in a.steps][-1] == "FINISHED"
    assert a.steps[-1].moved == {"to_provider": cost - fee, "to_fees": fee, "to_customer": 5_000}


def test_an_overbill_is_flagged_at_its_block() -> None:
    c = Chain()
    c.run(10_000, start=T0 + 100)
    ended = c.end(S.FINISHED, T0 + 250, 6_000, 0, 4_000, 0)
    assert checks(c) == [("bill", ended.block_number), ("refund", ended.block_number)]


def test_a_wrong_fee_is_flagged() -> None:
    c = Chain()
    c.run(10_000, start=T0 + 100)
    c.end(S.FINISHED, T0 + 250, 5_000, 0, 5_000, 0)  # no fee, though 300 bps were in force
    assert [k for k, _ in checks(c, fee_bps=300)] == ["fee"]


def test_an_oracle_failure_refunds_all_but_a_provider_failure_bills() -> None:
    c = Chain()
    c.run(10_000, start=T0 + 100)
    ev = c.end(S.FAILED, T0 + 250, 0, 0, 10_000)
    c.oracle_txs.add(ev.tx_hash)
    assert checks(c) == []
    c.oracle_txs.clear()  # the same split from a provider's completeJob(-1) underbills
    assert [k for k, _ in checks(c)] == ["bill", "refund"]


def test_out_of_credits_before_the_escrow_is_spent_is_flagged() -> None:
    c = Chain()
    c.run(1_000, start=T0 + 100)  # 1,000 units at 2,000/min last 30 s
    c.end(S.OUT_OF_CREDITS, T0 + 129, 1_000, 0, 0)
    assert [k for k, _ in checks(c)] == ["bill", "refund", "early-expiry"]
    c.events.pop()
    c.end(S.OUT_OF_CREDITS, T0 + 130, 1_000, 0, 0)
    assert checks(c) == []


def test_a_split_that_does_not_sum_to_the_escrow_is_flagged() -> None:
    c = Chain()
    c.add(
        "JobRequested",
        customer=CUST,
        escrow=500,
        maxPricePerMinute=10_000,
        cpus=2,
        gpus=0,
        memMb=0,
        spec=b"{}",
    )
    c.add("JobToppedUp", amount=500, escrow=1_000)
    c.add(
        "JobEnded",
        paid=0,
        fee=0,
        refunded=900,
        exitCode=-1,
        **{"from": S.PENDING, "to": S.CANCELLED},
    )
    assert [k for k, _ in checks(c)] == ["split", "refund"]


def test_a_placement_above_the_registered_prices_is_flagged() -> None:
    c = Chain()
    c.add(
        "JobRequested",
        customer=CUST,
        escrow=500,
        maxPricePerMinute=10_000,
        cpus=2,
        gpus=0,
        memMb=0,
        spec=b"{}",
    )
    c.add(
        "JobPlaced",
        provider=PROV,
        pricePerMinute=2_001,
        **{"from": S.PENDING, "to": S.META_SCHEDULED},
    )
    assert checks(c) == [("price", 2)]


def test_an_impossible_transition_is_flagged() -> None:
    c = Chain()
    c.run(1_000, start=T0 + 100)
    c.add("JobStatusChanged", **{"from": S.SCHEDULED, "to": S.RUNNING})
    assert checks(c) == [("transition", 5)]
