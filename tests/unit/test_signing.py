"""Type-2 transactions signed directly (`chain.signing`) are byte for byte what eth-account signs
(both sign deterministically), for every shape the grid sends: calls, deployments, empty and long
calldata, zero and large values."""

from __future__ import annotations

import random
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from metascheduler.chain.signing import Signer

KEY = keccak(b"signing test key")


def _tx(rng: random.Random, **over: Any) -> dict[str, Any]:
    tx: dict[str, Any] = {
        "chainId": rng.choice([1, 31337, 2**40]),
        "nonce": rng.choice([0, 1, 127, 128, 255, 256, rng.randrange(2**32)]),
        "maxPriorityFeePerGas": rng.choice([0, 10**9]),
        "maxFeePerGas": rng.choice([10**9, 3 * 10**9 + 7, 2**70]),
        "gas": rng.choice([21_000, 4_580_000, 30_000_000]),
        "to": to_checksum_address(rng.randbytes(20)),
        "value": rng.choice([0, 1, 10**21]),
        "data": rng.randbytes(rng.choice([0, 1, 4, 55, 56, 300, 70_000])),
        "type": 2,
    }
    tx.update(over)
    return tx


@pytest.mark.parametrize("seed", range(40))
def test_a_signed_transaction_equals_eth_accounts(seed: int) -> None:
    rng = random.Random(seed)
    tx = _tx(rng)
    if seed % 5 == 0:
        tx["data"] = bytes([rng.randrange(0x80)])  # one byte below 0x80: RLP writes it bare
    if seed % 7 == 0:
        tx["data"] = "0x" + bytes(tx["data"]).hex()  # hex text, as web3's encode_abi gives it
    raw, tx_hash = Signer(KEY).sign(tx)
    signed = Account.from_key(KEY).sign_transaction(tx)
    assert raw == bytes(signed.raw_transaction)
    assert tx_hash == bytes(signed.hash)


def test_a_deployment_equals_eth_accounts() -> None:
    rng = random.Random(7)
    tx = _tx(rng)
    del tx["to"]
    raw, tx_hash = Signer(KEY).sign(tx)
    signed = Account.from_key(KEY).sign_transaction(tx)
    assert (raw, tx_hash) == (bytes(signed.raw_transaction), bytes(signed.hash))


def test_what_it_does_not_sign_is_refused_in_words() -> None:
    rng = random.Random(1)
    signer = Signer(KEY)
    with pytest.raises(ValueError, match="type-2 transactions with the fields"):
        signer.sign(_tx(rng, accessList=[]))
    with pytest.raises(ValueError, match="type-2"):
        signer.sign(_tx(rng, type=0))
    with pytest.raises(ValueError, match=r"nonce=-1 is not an unsigned integer"):
        signer.sign(_tx(rng, nonce=-1))
    with pytest.raises(ValueError, match="is not an address"):
        signer.sign(_tx(rng, to="0x1234"))
    with pytest.raises(ValueError, match="32 bytes, not 3"):
        Signer(b"abc")
