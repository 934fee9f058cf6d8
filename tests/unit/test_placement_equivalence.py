"""The default policy's fast paths decide exactly what the plain algorithm decides.

Random grids, built to hit every branch: ties in price and size, dead providers, jobs queued at
providers, labels, GPUs, memory, price ceilings, estimates shorter and longer than the
reservations' shadows, unplaceable jobs.
"""

from __future__ import annotations

import random

import pytest

from metascheduler.placement import PendingJob, ProviderState, RunningJob, get_policy

from .placement_reference import reference_decide

# "c" is carried by no provider: those jobs are unplaceable.
LABELS: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset(),
    frozenset({"a"}),
    frozenset({"gpu"}),
    frozenset({"c"}),
)


def random_grid(seed: int) -> tuple[list[PendingJob], list[ProviderState], float]:
    rng = random.Random(seed)
    now = 10_000.0
    n_providers = rng.randint(1, 12)
    sizes = rng.sample((4, 8, 16, 32, 64), k=rng.randint(1, 3))
    ests = (60.0, 600.0, 3600.0, 7200.0)
    providers = []
    job_id = 10_000
    for p in range(n_providers):
        cpus = rng.choice(sizes)
        gpus = rng.choice((0, 0, 2, 4))
        jobs = []
        used = 0
        for _ in range(rng.randint(0, 6)):
            c = rng.randint(1, max(1, cpus // 2))
            queued = used + c > cpus or rng.random() < 0.15
            started = None if queued else now - rng.uniform(0, 4000)
            if not queued:
                used += c
            jobs.append(RunningJob(job_id, c, 0, c * 512, started, rng.choice(ests)))
            job_id += 1
        providers.append(
            ProviderState(
                provider=f"0x{p:02x}",
                cpus=cpus,
                gpus=gpus,
                mem_mb=cpus * 1024,
                cpu_price=rng.choice((1, 2, 2, 3)),
                gpu_price=rng.choice((0, 5)),
                gb_price=rng.choice((0, 1)),
                labels=frozenset({"gpu"}) if gpus else frozenset(rng.sample(("a", "b"), k=1)),
                alive=rng.random() < 0.9,
                jobs=tuple(jobs),
            )
        )
    pending = []
    for j in range(rng.randint(1, 80)):
        c = rng.choice((1, 1, 2, 4, 8, 16, 40))
        gpus = rng.choice((0, 0, 0, 1))
        pending.append(
            PendingJob(
                job_id=j,
                cpus=c,
                gpus=gpus,
                mem_mb=c * rng.choice((256, 1024, 2048)),
                max_price_per_minute=rng.choice((10**9, c * 2, c * 3 + 10)),
                labels=rng.choice(LABELS),
                submitted_at=now - rng.choice((0.0, 1.0, 2.0, rng.uniform(0, 900))),
                est_runtime_s=rng.choice((*ests, rng.uniform(1, 8000))),
            )
        )
    return pending, providers, now


@pytest.mark.parametrize("block", range(10))
def test_lateBinding_decidesAsThePlainAlgorithm_onRandomGrids(block: int) -> None:
    policy = get_policy("late_binding")
    placed = 0
    for seed in range(block * 100, block * 100 + 100):
        pending, providers, now = random_grid(seed)
        got = policy.decide(pending, providers, now)
        want = reference_decide(pending, providers, now)
        assert got == want, f"seed {seed}"
        placed += len(got.placements)
    assert placed > 0  # the grids exercise placing, not only holding
