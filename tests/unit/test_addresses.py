"""Addresses typed by people: one case, or mixed case with a valid EIP-55 checksum."""

from __future__ import annotations

import pytest

from metascheduler.chain.types import is_typed_address

GOOD = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"  # anvil's account 3, checksummed


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (GOOD, True),
        (GOOD.lower(), True),
        ("0x" + GOOD[2:].upper(), True),
        ("0x" + "0" * 40, True),
        (GOOD[:-1] + "B", False),  # one character mistyped: the checksum fails
        (GOOD.lower()[:-4] + "B906", False),  # mixed case without a checksum
        (GOOD[:-1], False),  # 39 digits
        (GOOD + "0", False),  # 41 digits
        ("0x1234", False),
        ("xyz", False),
        ("", False),
    ],
)
def test_is_typed_address(text: str, ok: bool) -> None:
    assert is_typed_address(text) is ok
