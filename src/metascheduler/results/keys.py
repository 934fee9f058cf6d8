"""Whose key results are encrypted to, and the per-job key that does the bulk encryption.

The customer's public key is not stored anywhere: anyone recovers it from the signature of the
customer's `requestJob` transaction. ECIES (secp256k1, the curve of Ethereum keys) wraps a fresh
32-byte AES-GCM key per job; only the holder of the wallet's private key unwraps it.
"""

from __future__ import annotations

import os

import ecies
from eth_account._utils.legacy_transactions import Transaction
from eth_account._utils.signing import (
    extract_chain_id,
    hash_of_signed_transaction,
    to_standard_v,
)
from eth_account.typed_transactions import TypedTransaction
from eth_keys import keys
from eth_keys.exceptions import BadSignature
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from rlp.exceptions import DecodingError

from .errors import ResultsError

KEY_BYTES = 32


def new_job_key() -> bytes:
    return os.urandom(KEY_BYTES)


def public_key_from_raw_transaction(raw: bytes, expected_sender: str | None = None) -> bytes:
    """The 64-byte public key that signed a raw (RLP, typed or legacy) transaction. With
    `expected_sender`, a key of another address is refused (the wrong transaction was given)."""
    raw = bytes(raw)
    try:
        if raw and raw[0] <= 0x7F:
            tx = TypedTransaction.from_bytes(HexBytes(raw))
            msg_hash, (v, r, s) = tx.hash(), tx.vrs()
        else:
            legacy = Transaction.from_bytes(HexBytes(raw))
            msg_hash = hash_of_signed_transaction(legacy)
            v = to_standard_v(extract_chain_id(legacy.v)[1])
            r, s = legacy.r, legacy.s
        sig = keys.Signature(vrs=(v, r, s))
        pub = sig.recover_public_key_from_msg_hash(msg_hash)
    except (BadSignature, DecodingError, ValueError, TypeError, IndexError) as exc:
        raise ResultsError(f"cannot recover a public key from this transaction: {exc}") from None
    if expected_sender is not None and pub.to_checksum_address() != to_checksum_address(
        expected_sender
    ):
        raise ResultsError(
            f"the transaction was signed by {pub.to_checksum_address()}, not by "
            f"{to_checksum_address(expected_sender)}: give the customer's requestJob transaction"
        )
    return pub.to_bytes()


def address_of(public_key: bytes) -> str:
    return keys.PublicKey(public_key).to_checksum_address()


def wrap(public_key: bytes, job_key: bytes) -> bytes:
    """`job_key` encrypted to `public_key` (64 bytes, uncompressed without the 0x04 prefix)."""
    if len(public_key) != 64:
        raise ResultsError(f"a public key is 64 bytes, got {len(public_key)}")
    return bytes(ecies.encrypt(b"\x04" + public_key, job_key))


def unwrap(private_key: bytes, wrapped: bytes) -> bytes:
    """The job key, with the wallet's private key; a key for another wallet fails in words."""
    try:
        key = bytes(ecies.decrypt(private_key, wrapped))
    except Exception:
        raise ResultsError(
            "this wallet cannot open the job's key: the results are encrypted to the customer's "
            "wallet (the account that sent requestJob); use that account"
        ) from None
    if len(key) != KEY_BYTES:
        raise ResultsError(f"the unwrapped job key has {len(key)} bytes, not {KEY_BYTES}")
    return key
