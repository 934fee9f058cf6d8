"""The default policy's fast paths decide exactly what the plain algorithm decides.

Random grids, built to hit every branch: ties in price and size, dead providers, jobs queued at
providers, labels, GPUs, memory, price ceilings, refusals, estimates shorter and longer than the
reservations' shadows, unplaceable jobs; small ones by the thousand, and grids of a few dozen
providers and a few thousand jobs, where shapes repeat and providers fill up, as at scale.
"""

from __future__ import annotations

import random

import pytest

from metascheduler.placement import (
    PendingJob,
    ProviderState,
    RunningJob,
    cheapest_prices,
    get_policy,
    late_binding_arrays,
)
from metascheduler.placement.eligibility import could_run, job_price
from metascheduler.placement.late_binding import ARRAYS_FROM, LateBinding, decide_plain

from .placement_reference import reference_decide

# "c" is carried by no provider: those jobs are unplaceable.
LABELS: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset(),
    frozenset({"a"}),
    frozenset({"gpu"}),
    frozenset({"c"}),
)
# As the chain allows: a price that fits int64 but whose product with memory does not, and one
# beyond int64. The arithmetic must stay exact.
LARGE, HUGE = 2**50, 2**70


def random_grid(
    seed: int, *, providers: tuple[int, int] = (1, 12), jobs: tuple[int, int] = (1, 80)
) -> tuple[list[PendingJob], list[ProviderState], float]:
    rng = random.Random(seed)
    now = 10_000.0
    n_providers = rng.randint(*providers)
    sizes = rng.sample((4, 8, 16, 32, 64), k=rng.randint(1, 3))
    ests = (60.0, 600.0, 3600.0, 7200.0)
    # Some grids price beyond int64 or number jobs beyond it.
    huge_prices = rng.random() < 0.1
    first_id = HUGE if rng.random() < 0.1 else 0
    states = []
    job_id = first_id + 10_000_000
    for p in range(n_providers):
        cpus = rng.choice(sizes)
        gpus = rng.choice((0, 0, 2, 4))
        running = []
        used = 0
        for _ in range(rng.randint(0, 6)):
            c = rng.randint(1, max(1, cpus // 2))
            queued = used + c > cpus or rng.random() < 0.15
            started = None if queued else now - rng.uniform(0, 4000)
            if not queued:
                used += c
            running.append(RunningJob(job_id, c, 0, c * 512, started, rng.choice(ests)))
            job_id += 1
        states.append(
            ProviderState(
                # Checksummed addresses are mixed case; refusals are kept in lower case.
                provider=f"0xAb{p:02x}",
                cpus=cpus,
                gpus=gpus,
                mem_mb=cpus * 1024,
                cpu_price=rng.choice((1, 2, 2, 3)),
                gpu_price=rng.choice((0, 5)),
                gb_price=rng.choice((0, 1, LARGE, HUGE)) if huge_prices else rng.choice((0, 1)),
                labels=frozenset({"gpu"}) if gpus else frozenset(rng.sample(("a", "b"), k=1)),
                alive=rng.random() < 0.9,
                jobs=tuple(running),
            )
        )
    addresses = [s.provider.lower() for s in states]
    pending = []
    for j in range(rng.randint(*jobs)):
        c = rng.choice((1, 1, 2, 4, 8, 16, 40))
        gpus = rng.choice((0, 0, 0, 1))
        refused: frozenset[str] = frozenset()
        if rng.random() < 0.1:
            refused = frozenset(rng.sample(addresses, k=rng.randint(1, min(3, len(addresses)))))
        pending.append(
            PendingJob(
                job_id=first_id + j,
                cpus=c,
                gpus=gpus,
                mem_mb=c * rng.choice((256, 1024, 2048)),
                max_price_per_minute=rng.choice((10**9, c * 2, c * 3 + 10, 2**256 - 1)),
                labels=rng.choice(LABELS),
                submitted_at=now - rng.choice((0.0, 1.0, 2.0, rng.uniform(0, 900))),
                est_runtime_s=rng.choice((*ests, rng.uniform(1, 8000))),
                refused_by=refused,
            )
        )
    return pending, states, now


def decisions_match(pending: list[PendingJob], providers: list[ProviderState], now: float) -> int:
    """Both forms of the policy (plain, for small calls; arrays, for large ones) decide as the
    reference does."""
    want = reference_decide(pending, providers, now)
    assert decide_plain(pending, providers, now) == want, "plain form"
    assert late_binding_arrays.decide(pending, providers, now) == want, "array form"
    return len(want.placements)


@pytest.mark.parametrize("block", range(10))
def test_lateBinding_decidesAsThePlainAlgorithm_onRandomGrids(block: int) -> None:
    placed = 0
    for seed in range(block * 100, block * 100 + 100):
        pending, providers, now = random_grid(seed)
        try:
            placed += decisions_match(pending, providers, now)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}") from e
    assert placed > 0  # the grids exercise placing, not only holding


@pytest.mark.parametrize("seed", range(12))
def test_lateBinding_decidesAsThePlainAlgorithm_onModerateGrids(seed: int) -> None:
    pending, providers, now = random_grid(10_000 + seed, providers=(20, 60), jobs=(1_000, 2_500))
    placed = decisions_match(pending, providers, now)
    assert 0 < placed < len(pending)  # some start now, the rest are held or unplaceable


def test_lateBinding_takesTheArrayFormForLargeCalls(monkeypatch: pytest.MonkeyPatch) -> None:
    forms = []
    monkeypatch.setattr(late_binding_arrays, "decide", lambda *a: forms.append("arrays"))
    monkeypatch.setattr(
        "metascheduler.placement.late_binding.decide_plain", lambda *a: forms.append("plain")
    )
    pending, providers, now = random_grid(1, providers=(20, 20), jobs=(100, 100))
    LateBinding().decide(pending, providers, now)
    many = pending * (ARRAYS_FROM // len(pending) // len(providers) + 1)
    LateBinding().decide(many, providers, now)
    assert forms == ["plain", "arrays"]


def test_randomGrids_coverRefusalsAndIntegersBeyondInt64() -> None:
    """The generator reaches the cases the fast path treats apart (else the tests above would
    pass without trying them)."""
    policy = get_policy("late_binding")
    refused_everywhere = huge = 0
    for seed in range(300):
        pending, providers, now = random_grid(seed)
        decisions = policy.decide(pending, providers, now)
        refused_everywhere += sum("refused by every" in u.reason for u in decisions.unplaceable)
        huge += any(p.price_per_minute >= 2**63 for p in decisions.placements) or any(
            p.job_id >= 2**63 for p in decisions.placements
        )
    assert refused_everywhere > 0
    assert huge > 0


def test_bothForms_withNoProvider_sayItInWords() -> None:
    pending, _, now = random_grid(3)
    assert decisions_match(pending, [], now) == 0
    reasons = {u.reason for u in late_binding_arrays.decide(pending, [], now).unplaceable}
    assert reasons == {"no approved provider"}


@pytest.mark.parametrize("seed", range(0, 300, 30))
def test_cheapestPrices_asEveryProviderChecked(seed: int) -> None:
    """The price the oracle's minimum-run check uses: over the providers that could ever run
    the job, alive or not, refusals aside."""
    pending, providers, _ = random_grid(seed, providers=(1, 30), jobs=(50, 300))
    want = [
        min((job_price(j, p) for p in providers if could_run(j, p)), default=0) for j in pending
    ]
    assert cheapest_prices(pending, providers) == want
    assert any(want) and not all(want)  # some could run somewhere, some nowhere
    assert cheapest_prices(pending, []) == [0] * len(pending)
