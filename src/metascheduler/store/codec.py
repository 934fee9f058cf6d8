"""Chain event args to JSON and back: ints beyond JSON's exact range as strings, bytes as hex."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eth_utils import is_address, to_checksum_address

#: Largest integer a JSON number holds exactly in every reader (JavaScript's safe range).
MAX_SAFE_INT = 2**53


def to_json(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INT < value < MAX_SAFE_INT else str(value)
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return _checksummed(value) if len(value) == 42 else value
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    raise TypeError(f"cannot store {type(value).__name__} in event args")


@lru_cache(maxsize=65_536)
def _checksummed(value: str) -> str:
    """An address string checksummed (others unchanged); cached, since the same few parties
    appear in thousands of events."""
    return to_checksum_address(value) if is_address(value) else value


def args_to_json(args: dict[str, Any]) -> dict[str, Any]:
    return {k: to_json(v) for k, v in args.items()}


def as_int(value: Any) -> int:
    """Reads back an int stored by `to_json` (a number or a decimal string)."""
    return int(value)


def as_bytes(value: Any) -> bytes:
    s = str(value)
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)
