"""Signed heartbeats (docs/security.md, "agent host"): only the provider's key can make one that
verifies, and a heartbeat cannot be replayed, reordered, moved to another market or chain,
kept for later, or sent malformed without a HeartbeatError saying so."""

from __future__ import annotations

import copy
from dataclasses import asdict, replace
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from metascheduler.heartbeat import MAX_SKEW_S, Heartbeat, HeartbeatError, sign, verify

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_MARKET = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
CHAIN = 31337
NOW = 1_700_000_000
PROVIDER: LocalAccount = Account.from_key("0x" + "11" * 32)
INTRUDER: LocalAccount = Account.from_key("0x" + "22" * 32)


def _hb(**changes: Any) -> Heartbeat:
    hb = Heartbeat(
        provider=PROVIDER.address,
        market=MARKET,
        chain_id=CHAIN,
        seq=7,
        timestamp=NOW,
        free_cpus=12,
        free_gpus=0,
        free_mem_mb=65_536,
        running=[3, 5],
        queued=[8],
        backend="slurm",
    )
    return replace(hb, **changes)


def _verify(body: dict[str, Any], *, last_seq: int | None = 6, now: float = NOW) -> Heartbeat:
    return verify(body, market=MARKET, chain_id=CHAIN, last_seq=last_seq, now=now)


def test_sign_then_verify_round_trips() -> None:
    hb = _hb()
    assert _verify(sign(hb, PROVIDER)) == hb


def test_first_heartbeat_has_no_last_seq() -> None:
    assert _verify(sign(_hb(seq=0), PROVIDER), last_seq=None).seq == 0


def test_market_address_case_does_not_matter() -> None:
    body = sign(_hb(market=MARKET.lower()), PROVIDER)
    assert _verify(body).market == MARKET.lower()


def test_sign_refuses_a_heartbeat_naming_another_provider() -> None:
    with pytest.raises(HeartbeatError, match="signed by the provider it names"):
        sign(_hb(provider=INTRUDER.address), PROVIDER)


def test_forged_signed_by_another_key() -> None:
    # The intruder signs the exact message naming the provider with its own key (sign() would
    # refuse, so it signs by hand).
    hb = _hb()
    sig = INTRUDER.sign_message(encode_defunct(hb.message())).signature
    body = {"heartbeat": asdict(hb), "signature": "0x" + bytes(sig).hex()}
    with pytest.raises(HeartbeatError, match=f"signed by {INTRUDER.address}"):
        _verify(body)


@pytest.mark.parametrize(
    ("field", "value"),
    [("free_cpus", 10_000), ("running", [3]), ("queued", []), ("backend", "local"), ("seq", 8)],
)
def test_tampered_field_breaks_the_signature(field: str, value: Any) -> None:
    body = sign(_hb(), PROVIDER)
    body["heartbeat"][field] = value
    with pytest.raises(HeartbeatError, match="signed by"):
        _verify(body)


def test_replayed_seq_is_rejected() -> None:
    body = sign(_hb(seq=7), PROVIDER)
    _verify(body, last_seq=6)
    with pytest.raises(HeartbeatError, match="seq 7 is not after the last one \\(7\\)"):
        _verify(copy.deepcopy(body), last_seq=7)


def test_reordered_lower_seq_is_rejected() -> None:
    older = sign(_hb(seq=5, timestamp=NOW - 10), PROVIDER)
    with pytest.raises(HeartbeatError, match="seq 5 is not after the last one \\(7\\)"):
        _verify(older, last_seq=7)


def test_wrong_market_is_rejected() -> None:
    body = sign(_hb(market=OTHER_MARKET), PROVIDER)
    with pytest.raises(HeartbeatError, match=f"for market {OTHER_MARKET} on chain {CHAIN}"):
        _verify(body)


def test_wrong_chain_id_is_rejected() -> None:
    body = sign(_hb(chain_id=1), PROVIDER)
    with pytest.raises(HeartbeatError, match="on chain 1, not"):
        _verify(body)


@pytest.mark.parametrize("offset", [-(MAX_SKEW_S + 1), MAX_SKEW_S + 1, -86_400])
def test_stale_or_future_timestamp_is_rejected(offset: int) -> None:
    body = sign(_hb(timestamp=NOW + offset), PROVIDER)
    with pytest.raises(HeartbeatError, match="check the agent's clock"):
        _verify(body)


@pytest.mark.parametrize("offset", [-MAX_SKEW_S, MAX_SKEW_S])
def test_timestamp_at_the_skew_limit_is_accepted(offset: int) -> None:
    _verify(sign(_hb(timestamp=NOW + offset), PROVIDER))


def _signed() -> dict[str, Any]:
    return sign(_hb(), PROVIDER)


def _without(key: str) -> dict[str, Any]:
    body = _signed()
    del body["heartbeat"][key]
    return body


def _with(key: str, value: Any) -> dict[str, Any]:
    body = _signed()
    body["heartbeat"][key] = value
    return body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty"),
        pytest.param({"heartbeat": asdict(_hb())}, id="no-signature"),
        pytest.param({"signature": _signed()["signature"]}, id="no-heartbeat"),
        pytest.param([1, 2], id="not-an-object"),
        pytest.param({"heartbeat": [1], "signature": "0x00"}, id="heartbeat-not-an-object"),
        pytest.param(_without("seq"), id="missing-field"),
        pytest.param(_with("extra", 1), id="unknown-field"),
        pytest.param({**_signed(), "signature": "0xzz"}, id="signature-not-hex"),
        pytest.param({**_signed(), "signature": "0x" + "00" * 65}, id="signature-zero"),
        pytest.param({**_signed(), "signature": "0x1234"}, id="signature-short"),
        pytest.param(_with("seq", "8"), id="seq-a-string"),
        pytest.param(_with("timestamp", float("nan")), id="timestamp-nan"),
        pytest.param(_with("timestamp", str(NOW)), id="timestamp-a-string"),
        pytest.param(_with("chain_id", True), id="chain-id-a-bool"),
        pytest.param(_with("provider", 12), id="provider-not-a-string"),
        pytest.param(_with("running", "3,5"), id="running-not-a-list"),
    ],
)
def test_malformed_body_is_a_heartbeat_error(body: Any) -> None:
    with pytest.raises(HeartbeatError):
        _verify(body)


def test_signed_nan_timestamp_is_rejected() -> None:
    # Every comparison with NaN is false, so a NaN timestamp would pass the freshness check and
    # the heartbeat, genuinely signed, could be replayed whenever the last seq is unknown.
    body = sign(_hb(timestamp=float("nan")), PROVIDER)
    with pytest.raises(HeartbeatError, match="timestamp must be an integer"):
        _verify(body, last_seq=None)
