"""Placement batches sized to fill blocks (oracle.service.size_batches), pure arithmetic."""

from __future__ import annotations

import pytest

from metascheduler.oracle.service import (
    MAX_BATCH_ITEMS,
    MAX_TXS_PER_BLOCK,
    nominal_batch_gas,
    size_batches,
)


def _most_items(budget: int) -> int:
    """Linear scan: the reference the bisection must agree with."""
    n = 0
    while n < MAX_BATCH_ITEMS and nominal_batch_gas(n + 1) <= budget:
        n += 1
    return n


@pytest.mark.parametrize("limit", [5_000_000, 15_000_000, 30_000_000, 36_000_000, 60_000_000])
@pytest.mark.parametrize("fraction", [0.95, 0.5, 0.1])
def test_batches_fit_a_block_and_hold_the_most_placements(limit: int, fraction: float) -> None:
    k, n, gas = size_batches(limit, fraction)
    assert 1 <= k <= MAX_TXS_PER_BLOCK and 1 <= n <= MAX_BATCH_ITEMS
    assert k * gas <= limit and gas <= limit * fraction  # k of them fit, none above the cap
    assert nominal_batch_gas(n) <= gas  # n fit a batch...
    assert n == MAX_BATCH_ITEMS or nominal_batch_gas(n + 1) > gas  # ...and one more does not
    best = max(j * _most_items(min(int(limit * fraction), limit // j)) for j in range(1, 65))
    assert k * n == best


def test_a_30m_block_holds_a_2000_job_backlog() -> None:
    k, n, _ = size_batches(30_000_000, 0.95)
    assert k * n >= 2_000  # bench_oracle's default backlog is placed within one block


def test_a_block_too_small_for_one_placement_still_gets_batches_of_one() -> None:
    k, n, gas = size_batches(nominal_batch_gas(1) - 1, 0.95)
    assert (k, n, gas) == (1, 1, nominal_batch_gas(1))
