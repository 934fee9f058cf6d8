"""Signed provider heartbeats: built and signed by the agent, verified by the API.

A heartbeat is canonical JSON signed with EIP-191 (`personal_sign`) by the provider's registered
key. It names the market and chain (no replay across deployments), carries a strictly
increasing sequence number and a timestamp (no replay, no reordering: the API keeps the last
seq per provider and rejects stale timestamps).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from metascheduler.errors import MetaschedulerError

#: A heartbeat older (or further in the future) than this is rejected.
MAX_SKEW_S = 120


class HeartbeatError(MetaschedulerError, ValueError):
    """A heartbeat was rejected; the message says why."""

    kind = "heartbeat"


@dataclass(frozen=True)
class Heartbeat:
    provider: str
    market: str
    chain_id: int
    seq: int
    timestamp: int
    free_cpus: int
    free_gpus: int
    free_mem_mb: int
    running: list[int] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    backend: str = ""

    def message(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


_STR_FIELDS = ("provider", "market", "backend")
_INT_FIELDS = ("chain_id", "seq", "timestamp", "free_cpus", "free_gpus", "free_mem_mb")


def _check_types(hb: Heartbeat) -> None:
    """The dataclass does not check types. A wrong one must be a HeartbeatError, not a TypeError
    later (an unhandled error in the API), and a NaN timestamp would pass the freshness check
    (every comparison with NaN is false), making a signed heartbeat replayable at any time."""
    for name in _STR_FIELDS:
        if not isinstance(getattr(hb, name), str):
            raise HeartbeatError(f"malformed heartbeat: {name} must be a string")
    for name in _INT_FIELDS:
        value = getattr(hb, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise HeartbeatError(f"malformed heartbeat: {name} must be an integer, got {value!r}")
    for name in ("running", "queued"):
        ids = getattr(hb, name)
        if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids
        ):
            raise HeartbeatError(f"malformed heartbeat: {name} must be a list of job ids")


def sign(hb: Heartbeat, account: LocalAccount) -> dict[str, Any]:
    """The JSON body the agent POSTs: the heartbeat and its signature."""
    if account.address.lower() != hb.provider.lower():
        raise HeartbeatError("a heartbeat must be signed by the provider it names")
    sig = account.sign_message(encode_defunct(hb.message())).signature
    return {"heartbeat": asdict(hb), "signature": "0x" + bytes(sig).hex()}


def verify(
    body: dict[str, Any],
    *,
    market: str,
    chain_id: int,
    last_seq: int | None,
    now: float | None = None,
) -> Heartbeat:
    """Checks a POSTed heartbeat: well-formed, for this market and chain, fresh, newer than the
    last one, and signed by the provider it names. Returns it, or raises HeartbeatError."""
    try:
        hb = Heartbeat(**body["heartbeat"])
        signature = bytes.fromhex(str(body["signature"]).removeprefix("0x"))
    except (KeyError, TypeError, ValueError) as exc:
        raise HeartbeatError(f"malformed heartbeat: {exc}") from None
    _check_types(hb)
    if hb.market.lower() != market.lower() or hb.chain_id != chain_id:
        raise HeartbeatError(
            f"heartbeat is for market {hb.market} on chain {hb.chain_id}, "
            f"not {market} on chain {chain_id}"
        )
    now = time.time() if now is None else now
    if abs(now - hb.timestamp) > MAX_SKEW_S:
        raise HeartbeatError(
            f"heartbeat timestamp {hb.timestamp} is {now - hb.timestamp:.0f} s off this server's "
            f"clock (max {MAX_SKEW_S} s): check the agent's clock"
        )
    if last_seq is not None and hb.seq <= last_seq:
        raise HeartbeatError(f"heartbeat seq {hb.seq} is not after the last one ({last_seq})")
    try:
        signer = Account.recover_message(encode_defunct(hb.message()), signature=signature)
    except Exception:
        raise HeartbeatError("heartbeat signature is not a valid signature") from None
    if signer.lower() != hb.provider.lower():
        raise HeartbeatError(f"heartbeat names provider {hb.provider} but is signed by {signer}")
    return hb
