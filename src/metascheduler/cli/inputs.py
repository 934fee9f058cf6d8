"""Values typed on the command line, checked before anything is read or sent."""

from __future__ import annotations

from metascheduler import billing
from metascheduler.cli.errors import UsageError


def credit_units(text: str, what: str, *, allow_zero: bool = False) -> int:
    """An amount of credits above zero (or zero, with `allow_zero`), in integer units."""
    try:
        units = billing.to_units(text)
    except (ValueError, ArithmeticError):
        raise UsageError(
            f"{what} {text!r} is not an amount of credits: write a number such as 12.5 "
            f"(at most {billing.CREDIT_DECIMALS} decimals)"
        ) from None
    if units < 0 or (units == 0 and not allow_zero):
        raise UsageError(f"{what} must be above zero (got {text})")
    return units


def address(text: str, what: str) -> str:
    from metascheduler.chain.types import ADDRESS_HINT, is_typed_address

    if not is_typed_address(text):
        raise UsageError(f"{what} {text!r} is not an address: {ADDRESS_HINT}")
    return text


def optional_address(text: str | None, what: str) -> str | None:
    """An address, or None when none was given."""
    return None if text is None else address(text, what)
