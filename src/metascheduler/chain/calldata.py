"""Calldata of `providerBatch`, the agents' one transaction per round, written word by word.

A step is a static tuple (uint256 jobId, uint8 action, int32 exitCode, bytes32 resultDigest,
uint256 at), so `providerBatch(Step[])` is the selector, the array's offset and length, then five
words per step: ~3 us a step, where eth_abi's strict codec took ~20 us (its value checks were a
tenth of an agent's CPU) and web3's `encode_abi` ~350 us. Values are checked as eth_abi checks
them. `tests/integration/test_raw_rpc.py` checks the bytes equal web3's. (The oracle's placeJobs
is written the same way in `oracle.calldata`.)
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi.exceptions import EncodingError

from metascheduler.chain.abi import pinned_selector
from metascheduler.chain.types import ProviderStep

#: The ABI signature the word layout below is written for.
PROVIDER_BATCH_SIGNATURE = "providerBatch((uint256,uint8,int32,bytes32,uint256)[])"
_INT32 = 1 << 31


def _selector() -> bytes:
    return pinned_selector("providerBatch", PROVIDER_BATCH_SIGNATURE, "chain/calldata.py")


def _uint(value: int, bits: int, what: str, job_id: int) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise EncodingError(f"providerBatch: job {job_id}'s {what}={value!r} is not a uint{bits}")
    return value.to_bytes(32, "big")


def provider_batch(steps: Sequence[ProviderStep]) -> bytes:
    """`providerBatch` calldata of `steps` (a COMPLETE's result digest is 32 bytes)."""
    words = [_selector(), (32).to_bytes(32, "big"), len(steps).to_bytes(32, "big")]
    for s in steps:
        code = s.exit_code
        if isinstance(code, bool) or not isinstance(code, int) or not -_INT32 <= code < _INT32:
            raise EncodingError(
                f"providerBatch: job {s.job_id}'s exit code {code!r} is not an int32"
            )
        digest = bytes(s.result_digest)
        if len(digest) != 32:
            raise EncodingError(
                f"providerBatch: job {s.job_id}'s result digest is {len(digest)} bytes, not 32"
            )
        words += (
            _uint(s.job_id, 256, "jobId", s.job_id),
            _uint(int(s.action), 8, "action", s.job_id),
            code.to_bytes(32, "big", signed=True),
            digest,
            _uint(s.at, 256, "at", s.job_id),
        )
    return b"".join(words)
