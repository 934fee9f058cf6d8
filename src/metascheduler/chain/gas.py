"""Gas limits the bindings set themselves, so that a batch needs no eth_estimateGas round trip."""

from __future__ import annotations

# Gas per item of the batch entry points, measured with margin (scripts/bench_gas.py): the base
# covers the transaction and the first cold reads.
BATCH_GAS_BASE = 80_000
STEP_GAS_PER_ITEM = 45_000
KEEP_GAS_PER_ITEM = 45_000

# placeJobs gas, exact rather than a round bound: blocks are packed by gas *limit*, so a limit
# 20% above use leaves a sixth of every block empty. Measured on anvil (receipts of batches of
# 1 to 400 items; tests/integration/test_oracle.py checks the bound against real receipts):
# execution = 7,012 + 12,490 per item + 4,000 per provider after the first (its record and its
# number are cold once per transaction) + ~0.44 n^2 (memory: each item's abi.encode and event
# data stay allocated). Every branch of `_place` that skips an item costs less than a placement.
# The constants below round each term up; calldata is priced from the bytes themselves.
TX_BASE_GAS = 21_000
PLACE_EXEC_BASE = 7_100
PLACE_EXEC_PER_ITEM = 12_500
PLACE_EXEC_PER_PROVIDER = 4_200
#: Calldata of one placement is 8 ABI words; at most this many bytes of them are non-zero in
#: practice (job id, address, spec hash, small resource numbers and prices): used to size
#: batches ahead.
PLACE_ITEM_CALLDATA_GAS = 68 * 16 + (8 * 32 - 68) * 4

#: Deployment gas limits, above what the contracts need (a receipt's gasUsed is what is paid).
DEPLOY_CREDIT_GAS = 3_000_000
DEPLOY_MARKET_GAS = 7_000_000


def calldata_gas(data: bytes) -> int:
    """Intrinsic gas of calldata: 4 per zero byte, 16 per other byte."""
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


def place_jobs_exec_gas(n_items: int, n_providers: int) -> int:
    """Execution gas bound of a placeJobs of `n_items` to `n_providers` distinct providers."""
    return (
        PLACE_EXEC_BASE
        + PLACE_EXEC_PER_ITEM * n_items
        + PLACE_EXEC_PER_PROVIDER * max(0, n_providers - 1)
        + (n_items * n_items + 1) // 2
    )


def place_jobs_gas(data: bytes, n_items: int, n_providers: int) -> int:
    """Gas limit of one placeJobs transaction with calldata `data`: its exact intrinsic cost plus
    the execution bound. No eth_estimateGas round trip, and no 20% of a block wasted."""
    return TX_BASE_GAS + calldata_gas(data) + place_jobs_exec_gas(n_items, n_providers)
