"""The Python billing arithmetic (mirrored on chain in tests/integration/test_chain_market.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metascheduler import billing


def test_price_per_minute_rounds_memory_down() -> None:
    assert billing.price_per_minute(4, 1, 1000, 1_000, 50_000, 100) == 4_000 + 50_000 + 97


@given(
    price=st.integers(0, 2**40 - 1),
    elapsed=st.integers(0, 10**9),
    escrow=st.integers(0, 2**96 - 1),
    bps=st.integers(0, 2_000),
)
def test_cost_and_fee_never_exceed_escrow(price: int, elapsed: int, escrow: int, bps: int) -> None:
    c = billing.cost(price=price, elapsed_s=elapsed, escrow=escrow)
    f = billing.fee(c, bps)
    assert 0 <= f <= c <= escrow
    assert c <= price * elapsed // 60
    # rounding is in the customer's favour by less than one unit
    assert c == escrow or price * elapsed / 60 - c < 1


@given(price=st.integers(1, 2**40 - 1), escrow=st.integers(1, 2**96 - 1))
def test_funded_seconds_is_the_first_second_the_escrow_is_spent(price: int, escrow: int) -> None:
    t = billing.funded_seconds(escrow=escrow, price=price)
    assert price * t >= escrow * 60
    assert price * (t - 1) < escrow * 60


@pytest.mark.parametrize(
    ("text", "units"), [("1", 1_000_000), ("12.5", 12_500_000), ("0.000001", 1)]
)
def test_units_round_trip(text: str, units: int) -> None:
    assert billing.to_units(text) == units
    assert billing.from_units(units) == text


def test_to_units_refuses_sub_unit_amounts() -> None:
    with pytest.raises(ValueError, match="more than 6 decimals"):
        billing.to_units("0.0000001")
