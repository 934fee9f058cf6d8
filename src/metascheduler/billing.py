"""Prices, units and the billing arithmetic, written once for Python.

This module mirrors the contract's arithmetic exactly, function for function: the ``Billing``
library (``contracts/src/libraries/Billing.sol``: ``pricePerMinute``, ``cost``, ``fee``,
``fundedSeconds``). ``contracts/test/Billing.fuzz.t.sol`` checks the contract bills by it, and
``tests/integration/test_chain_market.py`` and ``test_audit.py`` check this module agrees with
the contract's quotes and bills. It is a pure leaf: it imports nothing of ours, so placement may
use it.

Units: credits have 6 decimals (1 credit = 1_000_000 units). Prices are credit units per minute
per CPU, per GPU and per GB of memory (1 GB = 1024 MB). Time is metered in whole seconds of
block time; every division rounds down, in the customer's favour.
"""

from __future__ import annotations

CREDIT_DECIMALS = 6
UNITS_PER_CREDIT = 10**CREDIT_DECIMALS
SECONDS_PER_MINUTE = 60
MB_PER_GB = 1024
BPS_DENOMINATOR = 10_000
#: The highest platform fee the market accepts (its MAX_FEE_BPS).
MAX_FEE_BPS = 2_000


def price_per_minute(
    cpus: int, gpus: int, mem_mb: int, cpu_price: int, gpu_price: int, gb_price: int
) -> int:
    """Credit units per minute for a job of these resources at these provider prices."""
    return cpus * cpu_price + gpus * gpu_price + (mem_mb * gb_price) // MB_PER_GB


def cost(*, price: int, elapsed_s: int, escrow: int) -> int:
    """What a run of ``elapsed_s`` seconds at ``price`` per minute costs, capped by the escrow.
    Keyword-only, as every function taking two amounts: a swap would not be caught otherwise."""
    if elapsed_s <= 0:
        return 0
    return min(escrow, (price * elapsed_s) // SECONDS_PER_MINUTE)


def fee(amount: int, fee_bps: int) -> int:
    """The platform's share of ``amount`` (basis points, rounded down)."""
    return (amount * fee_bps) // BPS_DENOMINATOR


def funded_seconds(*, escrow: int, price: int) -> int:
    """Seconds of running after which the escrow is spent (OUT_OF_CREDITS may be called).

    The contract allows OUT_OF_CREDITS once ``price * elapsed >= escrow * 60``, i.e. at
    ``ceil(escrow * 60 / price)`` seconds. A zero price never runs out.
    """
    if price <= 0:
        return 2**63 - 1
    return -(-(escrow * SECONDS_PER_MINUTE) // price)


def to_units(credits: float | int | str) -> int:
    """Credits as a human writes them ("12.5") to integer units, exactly."""
    from decimal import Decimal

    units = Decimal(str(credits)) * UNITS_PER_CREDIT
    if units != units.to_integral_value():
        raise ValueError(f"{credits} has more than {CREDIT_DECIMALS} decimals")
    return int(units)


def from_units(units: int) -> str:
    """Integer units to a credit string ("12.5")."""
    whole, frac = divmod(abs(units), UNITS_PER_CREDIT)
    sign = "-" if units < 0 else ""
    frac_s = f"{frac:0{CREDIT_DECIMALS}d}".rstrip("0")
    return f"{sign}{whole}.{frac_s}" if frac_s else f"{sign}{whole}"
