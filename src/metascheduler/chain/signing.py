"""Signing EIP-1559 (type 2) transactions without an access list, directly: RLP (pyrlp), keccak
and libsecp256k1 (coincurve).

eth-account's `sign_transaction` takes ~0.6 ms of CPU a transaction, mostly in checking and
converting the dict through its typed-transaction classes and a general RLP serializer; here the
same bytes take ~0.1 ms (signatures are deterministic, RFC 6979, so the bytes are equal:
`tests/unit/test_signing.py` compares them with eth-account's). The agents and the oracle sign
several transactions a block, and a benchmark's customers thousands before each step.
"""

from __future__ import annotations

from typing import Any

import rlp
from coincurve import PrivateKey
from eth_hash.auto import keccak

#: The fields of a transaction this signs, exactly: anything else (an access list, blobs) is
#: eth-account's.
FIELDS = frozenset(
    {"chainId", "nonce", "maxPriorityFeePerGas", "maxFeePerGas", "gas", "to", "value", "data"}
)
_TYPE_2 = b"\x02"


class Signer:
    """One account's key, ready to sign (the key object is made once, not per transaction)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f"a private key is 32 bytes, not {len(key)}")
        self._key = PrivateKey(bytes(key))

    def sign(self, tx: dict[str, Any]) -> tuple[bytes, bytes]:
        """(the signed raw transaction, its hash) of a type-2 transaction dict with the keys of
        FIELDS (and optionally ``type`` = 2); ``to`` None or absent deploys."""
        keys = set(tx) - {"type"}
        if tx.get("type", 2) != 2 or not keys <= FIELDS or not keys >= FIELDS - {"to"}:
            raise ValueError(
                f"signs type-2 transactions with the fields {sorted(FIELDS)} only, not {sorted(tx)}"
            )
        to = tx.get("to")
        fields: list[Any] = [
            _uint(tx["chainId"], "chainId"),
            _uint(tx["nonce"], "nonce"),
            _uint(tx["maxPriorityFeePerGas"], "maxPriorityFeePerGas"),
            _uint(tx["maxFeePerGas"], "maxFeePerGas"),
            _uint(tx["gas"], "gas"),
            b"" if to is None else _address(to),
            _uint(tx["value"], "value"),
            _data(tx["data"]),
            [],  # no access list
        ]
        digest = keccak(_TYPE_2 + rlp.encode(fields))
        sig = self._key.sign_recoverable(digest, hasher=None)
        r, s, y = sig[:32], sig[32:64], sig[64]
        raw = _TYPE_2 + rlp.encode([*fields, _uint(y, "v"), _strip(r), _strip(s)])
        return raw, keccak(raw)


def _uint(value: Any, what: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"transaction field {what}={value!r} is not an unsigned integer")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _strip(word: bytes) -> bytes:
    return word.lstrip(b"\x00")


def _address(to: Any) -> bytes:
    raw = bytes.fromhex(to[2:]) if isinstance(to, str) and to[:2] in ("0x", "0X") else bytes(to)
    if len(raw) != 20:
        raise ValueError(f"transaction field to={to!r} is not an address")
    return raw


def _data(data: Any) -> bytes:
    if isinstance(data, str):
        return bytes.fromhex(data[2:] if data[:2] in ("0x", "0X") else data)
    return bytes(data)
