"""Every policy's constraints: max price, labels, capacity, liveness, reasons, tie-breaks."""

from __future__ import annotations

from typing import Any

import pytest

from metascheduler.placement import (
    DEFAULT_POLICY,
    POLICY_NAMES,
    PendingJob,
    ProviderState,
    RunningJob,
    get_policy,
)


def job(
    job_id: int = 1,
    cpus: int = 4,
    *,
    gpus: int = 0,
    mem_mb: int = 0,
    max_price: int = 10**9,
    labels: frozenset[str] = frozenset(),
    at: float = 0.0,
    est: float = 600.0,
) -> PendingJob:
    return PendingJob(job_id, cpus, gpus, mem_mb, max_price, labels, at, est)


def provider(
    name: str,
    cpus: int = 16,
    *,
    gpus: int = 0,
    mem_mb: int = 64 * 1024,
    cpu_price: int = 10,
    gpu_price: int = 0,
    gb_price: int = 0,
    labels: frozenset[str] = frozenset(),
    alive: bool = True,
    jobs: tuple[RunningJob, ...] = (),
) -> ProviderState:
    return ProviderState(
        name, cpus, gpus, mem_mb, cpu_price, gpu_price, gb_price, labels, alive, jobs
    )


def running(job_id: int, cpus: int, started: float | None, est: float) -> RunningJob:
    return RunningJob(job_id, cpus, 0, 0, started, est)


ALL = pytest.mark.parametrize("name", POLICY_NAMES)


def test_default_policy_is_registered() -> None:
    assert DEFAULT_POLICY in POLICY_NAMES
    assert get_policy(DEFAULT_POLICY).name == DEFAULT_POLICY


def test_get_policy_unknown_name_raises() -> None:
    with pytest.raises(KeyError, match="unknown policy"):
        get_policy("fastest")


@ALL
def test_decide_neverExceedsMaxPrice(name: str) -> None:
    providers = [provider("0xdear", cpu_price=100), provider("0xfair", cpu_price=5)]
    d = get_policy(name).decide([job(1, 4, max_price=4 * 5)], providers, 0.0)
    assert [(p.provider, p.price_per_minute) for p in d.placements] == [("0xfair", 20)]


@ALL
def test_decide_tooExpensiveEverywhere_isUnplaceableWithReason(name: str) -> None:
    d = get_policy(name).decide([job(1, 4, max_price=39)], [provider("0xa")], 0.0)
    assert d.placements == []
    assert [u.job_id for u in d.unplaceable] == [1]
    assert "max price 39/min" in d.unplaceable[0].reason
    assert "40/min" in d.unplaceable[0].reason


@ALL
def test_decide_respectsLabels(name: str) -> None:
    gpu = frozenset({"a100"})
    providers = [provider("0xplain"), provider("0xgpu", gpus=4, labels=gpu | {"ib"})]
    d = get_policy(name).decide([job(1, 2, gpus=1, labels=gpu)], providers, 0.0)
    assert [p.provider for p in d.placements] == ["0xgpu"]


@ALL
def test_decide_missingLabel_isUnplaceableWithReason(name: str) -> None:
    d = get_policy(name).decide([job(1, labels=frozenset({"arm"}))], [provider("0xa")], 0.0)
    assert d.placements == []
    assert "labels ['arm']" in d.unplaceable[0].reason


@ALL
@pytest.mark.parametrize(
    ("request_", "word"),
    [({"cpus": 17}, "17 CPUs"), ({"gpus": 1}, "1 GPUs"), ({"mem_mb": 10**6}, "1000000 MB")],
)
def test_decide_tooLarge_isUnplaceableWithReason(
    name: str, request_: dict[str, Any], word: str
) -> None:
    d = get_policy(name).decide([job(1, **request_)], [provider("0xa", 16)], 0.0)
    assert d.placements == []
    assert d.unplaceable[0].reason.startswith("too large")
    assert word in d.unplaceable[0].reason


@ALL
def test_decide_noProviders_isUnplaceable(name: str) -> None:
    d = get_policy(name).decide([job(1)], [], 0.0)
    assert d.unplaceable[0].reason == "no approved provider"


@ALL
def test_decide_deadProvider_getsNothing_andJobIsHeld(name: str) -> None:
    d = get_policy(name).decide([job(1)], [provider("0xdead", alive=False)], 0.0)
    assert d.placements == [] and d.unplaceable == []
    d = get_policy(name).decide([job(1)], [provider("0xdead", alive=False), provider("0xok")], 0.0)
    assert [p.provider for p in d.placements] == ["0xok"]


@pytest.mark.parametrize("name", ["late_binding", "earliest_start", "best_fit", "cheapest"])
def test_decide_equalStart_cheaperWins(name: str) -> None:
    providers = [provider("0xdear", cpu_price=11), provider("0xcheap", cpu_price=10)]
    d = get_policy(name).decide([job(1, 4)], providers, 0.0)
    assert [(p.provider, p.price_per_minute) for p in d.placements] == [("0xcheap", 40)]


def test_decide_price_usesTheContractsArithmetic() -> None:
    p = provider("0xa", gpus=2, cpu_price=3, gpu_price=100, gb_price=8)
    d = get_policy("late_binding").decide([job(1, 4, gpus=1, mem_mb=1536)], [p], 0.0)
    assert d.placements[0].price_per_minute == 4 * 3 + 100 + (1536 * 8) // 1024


@pytest.mark.parametrize("name", ["late_binding", "earliest_start"])
def test_decide_earlierStartBeatsCheaperPrice(name: str) -> None:
    busy = provider("0xcheapbusy", 8, cpu_price=1, jobs=(running(9, 8, 0.0, 1000.0),))
    d = get_policy(name).decide([job(1, 4)], [busy, provider("0xdearfree", 8)], 10.0)
    assert [p.provider for p in d.placements] == ["0xdearfree"]


@ALL
def test_decide_batchAccountsForItsOwnPlacements(name: str) -> None:
    """Two 6-CPU jobs on a 10-CPU provider: never both expected to run at once."""
    d = get_policy(name).decide([job(1, 6), job(2, 6)], [provider("0xa", 10)], 0.0)
    if name == "late_binding":
        assert [p.job_id for p in d.placements] == [1]  # the other is held
    else:
        assert [p.job_id for p in d.placements] == [1, 2]  # queued at the provider


def test_earliestStart_countsQueuedJobsAtTheProvider() -> None:
    queued = provider("0xq", 8, jobs=(running(9, 8, None, 500.0),))
    d = get_policy("earliest_start").decide([job(1, 4)], [queued, provider("0xr", 8)], 0.0)
    assert [p.provider for p in d.placements] == ["0xr"]


def test_lateBinding_holdsWhatCannotStartNow() -> None:
    full = provider("0xa", 8, jobs=(running(9, 8, 0.0, 100.0),))
    d = get_policy("late_binding").decide([job(1, 4)], [full], 50.0)
    assert d.placements == [] and d.unplaceable == []


def test_lateBinding_backfillsOnlyWhatDoesNotDelayTheHead() -> None:
    # 10 CPUs, 8 busy until t=100 (estimate). Head needs 10: reserved at t=100, nothing spare.
    busy = provider("0xa", 10, jobs=(running(9, 8, 0.0, 100.0),))
    pending = [
        job(1, 10, at=0.0, est=50.0),
        job(2, 2, at=1.0, est=500.0),  # would end after t=100 and use the head's CPUs: held
        job(3, 2, at=2.0, est=60.0),  # ends at t=70 <= 100: backfilled
    ]
    d = get_policy("late_binding").decide(pending, [busy], 10.0)
    assert [p.job_id for p in d.placements] == [3]


def test_lateBinding_backfillsTheShortestEstimateFirst() -> None:
    # 10 CPUs, 6 busy until t=100: 4 free now. The head (10 CPUs) is reserved at t=100. Jobs 2
    # and 3 both end before then, but only one fits the 4 free CPUs: the shorter, though younger.
    busy = provider("0xa", 10, jobs=(running(9, 6, 0.0, 100.0),))
    pending = [
        job(1, 10, at=0.0, est=1000.0),
        job(2, 4, at=1.0, est=80.0),
        job(3, 4, at=2.0, est=30.0),
    ]
    d = get_policy("late_binding").decide(pending, [busy], 10.0)
    assert [p.job_id for p in d.placements] == [3]


def test_lateBinding_reservationProtectsTheOldestBlockedJob_notTheShortest() -> None:
    # 10 CPUs, 6 busy until t=100. Job 1 (10 CPUs, long) and job 2 (8 CPUs, short) both wait.
    # The reservation is the oldest's: at t=100 it leaves nothing spare, so job 3, which would
    # still run then, is held. Had the shorter job 2 held it, 2 CPUs would be spare for job 3.
    busy = provider("0xa", 10, jobs=(running(9, 6, 0.0, 100.0),))
    pending = [
        job(1, 10, at=0.0, est=1000.0),
        job(2, 8, at=1.0, est=50.0),
        job(3, 2, at=2.0, est=500.0),
        job(4, 2, at=3.0, est=60.0),  # ends at t=70, before the shadow time: backfilled
    ]
    d = get_policy("late_binding").decide(pending, [busy], 10.0)
    assert [p.job_id for p in d.placements] == [4]


def test_lateBinding_wideJobBehindAReservedNarrowOneGetsItsOwnReservation() -> None:
    # The narrow head is reserved on the small provider; the wide job only fits the big one,
    # which a younger, shorter narrow job must then not take from it.
    small = provider("0xsmall", 8, jobs=(running(8, 8, 0.0, 100.0),))
    big = provider("0xbig", 16, jobs=(running(9, 12, 0.0, 100.0),))  # 4 CPUs free
    pending = [
        job(1, 6, at=0.0, est=1000.0),  # reserved on 0xsmall at t=100 (first in the list)
        job(2, 16, at=1.0, est=1000.0),  # only 0xbig can run it: reserved there at t=100
        job(3, 2, at=2.0, est=500.0),  # would still run at t=100 on 0xbig: held
        job(4, 2, at=3.0, est=50.0),  # ends before t=100: backfilled on 0xbig
    ]
    d = get_policy("late_binding").decide(pending, [small, big], 10.0)
    assert [(p.job_id, p.provider) for p in d.placements] == [(4, "0xbig")]


def test_lateBinding_backfillsFreelyOnAnotherProvider() -> None:
    busy = provider("0xa", 10, jobs=(running(9, 8, 0.0, 100.0),))
    other = provider("0xb", 4, cpu_price=99)
    pending = [job(1, 10, at=0.0), job(2, 2, at=1.0, est=500.0)]
    d = get_policy("late_binding").decide(pending, [busy, other], 10.0)
    assert [(p.job_id, p.provider) for p in d.placements] == [(2, "0xb")]


def test_lateBinding_narrowJobsLeaveTheLargeProviderToWideOnes() -> None:
    providers = [provider("0xbig", 64), provider("0xsmall", 16)]
    d = get_policy("late_binding").decide([job(1, 4)], providers, 0.0)
    assert [p.provider for p in d.placements] == ["0xsmall"]


def test_lateBinding_isStatelessAndOrderIndependent() -> None:
    providers = [provider("0xa", 10), provider("0xb", 10)]
    pending = [job(i, 3, at=float(i)) for i in range(6)]
    policy = get_policy("late_binding")
    first = policy.decide(pending, providers, 0.0)
    again = policy.decide(list(reversed(pending)), providers, 0.0)
    assert first == again
    assert len(first.placements) == 6


def test_random_isDeterministicForASeed() -> None:
    providers = [provider(f"0x{i}") for i in range(5)]
    pending = [job(i, 1) for i in range(40)]

    def picks(seed: int) -> list[str]:
        return [
            p.provider
            for p in get_policy("random", seed=seed).decide(pending, providers, 0).placements
        ]

    assert picks(7) == picks(7)
    assert picks(7) != picks(8)
    assert len(set(picks(7))) == 5


def test_roundRobin_takesTurns() -> None:
    providers = [provider("0xa"), provider("0xb")]
    d = get_policy("round_robin").decide([job(i, 1) for i in range(4)], providers, 0.0)
    assert [p.provider for p in d.placements] == ["0xa", "0xb", "0xa", "0xb"]


def test_leastLoaded_picksTheLeastEstimatedWork() -> None:
    loaded = provider("0xa", 8, jobs=(running(9, 4, 0.0, 1000.0),))
    light = provider("0xb", 8, cpu_price=50, jobs=(running(8, 4, 0.0, 100.0),))
    d = get_policy("least_loaded").decide([job(1, 2)], [loaded, light], 10.0)
    assert [p.provider for p in d.placements] == ["0xb"]


def test_bestFit_picksTheTightestHole() -> None:
    roomy = provider("0xroomy", 16)
    snug = provider("0xsnug", 16, jobs=(running(9, 12, 0.0, 100.0),))
    d = get_policy("best_fit").decide([job(1, 4)], [roomy, snug], 0.0)
    assert [p.provider for p in d.placements] == ["0xsnug"]


def test_lateBinding_holdsEverythingWhenTheGridIsFull() -> None:
    # Its speed with thousands pending is measured by scripts/bench_sim.py, not here.
    providers = [
        provider(
            f"0x{i}",
            64,
            jobs=tuple(running(10_000 + i * 100 + k, 8, 0.0, 3600.0) for k in range(8)),
        )
        for i in range(50)
    ]
    pending = [job(i, 1 + i % 32, at=float(i)) for i in range(5000)]
    d = get_policy("late_binding").decide(pending, providers, 10.0)
    assert d.placements == []  # the grid is full: everything is held


@ALL
def test_decide_neverOffersAJobToAProviderThatRefusedIt(name: str) -> None:
    providers = [provider("0xcheap", cpu_price=1), provider("0xdear", cpu_price=5)]
    refused = PendingJob(1, 4, 0, 0, 10**9, frozenset(), 0.0, 600.0, frozenset({"0xcheap"}))
    d = get_policy(name).decide([refused], providers, 0.0)
    assert [p.provider for p in d.placements] == ["0xdear"]


@ALL
def test_decide_refusedByEveryoneAble_isUnplaceableWithReason(name: str) -> None:
    refused = PendingJob(1, 4, 0, 0, 10**9, frozenset(), 0.0, 600.0, frozenset({"0xa"}))
    d = get_policy(name).decide([refused, job(2)], [provider("0xa")], 0.0)
    assert [p.job_id for p in d.placements] == [2]
    assert [u.job_id for u in d.unplaceable] == [1]
    assert "refused by every provider able to run it" in d.unplaceable[0].reason
