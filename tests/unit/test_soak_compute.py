"""The soak's comparison of delivered compute (backend records) with bills (the audit's reading of
the chain): what it calls underpaid, overbilled and free compute."""

from __future__ import annotations

from metascheduler.audit.model import Bill, JobAudit
from metascheduler.devnet.soak.compute import RESULTS_WAIT_S, ROUND_S, Run, compare

PRICE = 1_200  # units per minute: 20 a second
T0 = 1_000_000.0


def _job(
    status: str, started: float | None, ended: float, cost: int, escrow: int = 10**6
) -> JobAudit:
    a = JobAudit(job_id=1, status=status, customer="0xc", provider="0xp")
    a.price_per_minute = PRICE
    a.max_price_per_minute = 5_000
    a.escrow = escrow
    a.started_at = None if started is None else int(started)
    a.ended_at = int(ended)
    a.exit_code = 0 if status == "FINISHED" else -1
    a.actual = Bill(cost=cost, fee=0, paid=cost, refunded=escrow - cost)
    return a


def _compare(a: JobAudit, run: Run | None, down: list[tuple[float, float]] | None = None):
    runs = {1: [run]} if run else {}
    return compare({1: a}, runs, {"agent-1": down or []}, silent_bound_s=26.0, confirmations_s=5.0)


def test_a_job_billed_for_its_chain_window_is_neither_underpaid_nor_overbilled() -> None:
    # The backend ran 100 s from T0; START mined 2 s later, COMPLETE 5 s after the end.
    a = _job("FINISHED", T0 + 2, T0 + 105, cost=20 * 103)
    r = _compare(a, Run("agent-1:7", T0, T0 + 100))
    assert (r.provider_underpaid, r.customer_overbilled) == (0, 0)
    assert r.free_compute_s == 0.0  # billed 103 s for 100 delivered
    assert r.free_compute_over_bound == 0


def test_compute_delivered_while_running_on_chain_and_not_billed_is_underpaid() -> None:
    # Refunded in full (as a heartbeat outage once did) after 100 s delivered while RUNNING.
    a = _job("FAILED", T0 + 2, T0 + 100, cost=0)
    r = _compare(a, Run("agent-1:7", T0, T0 + 100))
    # Owed: the RUNNING window (98 s) less the silent provider's allowance (26 s), a second
    # each way of the chain's whole-second clock and the lag of the agent's clock estimate
    # (2 s), at 20 units a second.
    assert r.provider_underpaid == 20 * (98 - 26 - 2 - 2)
    assert r.free_compute_s == 100.0
    assert r.free_compute_over_bound == 1


def test_the_start_gap_is_free_compute_within_its_bound_not_underpayment() -> None:
    # START mined 3 s after the backend started: those 3 s are the documented timing gap.
    a = _job("FINISHED", T0 + 3, T0 + 10, cost=20 * 7)
    r = _compare(a, Run("agent-1:7", T0, T0 + 9))
    assert r.provider_underpaid == 0
    assert r.free_compute_s == 2.0
    assert r.free_compute_s <= r.free_compute_bound_s


def test_billing_far_beyond_the_run_is_overbilled_and_a_job_that_never_ran_may_cost_nothing() -> (
    None
):
    allowed_s = 1 + RESULTS_WAIT_S + ROUND_S + 1  # delivered, the digest wait, a round, the clock
    a = _job("FINISHED", T0, T0 + 200, cost=20 * 200)
    r = _compare(a, Run("agent-1:7", T0, T0 + 1))
    assert r.customer_overbilled == 20 * 200 - round(20 * allowed_s)
    never = _job("CANCELLED", None, T0 + 50, cost=500)
    assert _compare(never, None).customer_overbilled == 500


def test_an_agents_downtime_extends_what_may_run_unbilled() -> None:
    # The agent was down 40 s after the backend started the job: its START came late.
    a = _job("FINISHED", T0 + 42, T0 + 60, cost=20 * 18)
    run = Run("agent-1:7", T0, T0 + 58)
    assert _compare(a, run).free_compute_over_bound == 1
    r = _compare(a, run, down=[(T0 + 1, T0 + 41)])
    assert r.free_compute_over_bound == 0
    assert r.provider_underpaid == 0
