"""The result digest a completion commits on chain: the hash of the encrypted output archive
(SHA-256 of its bytes, as stored) and of the final log chain (the digest of its final chunk).

    result_digest = keccak256("metascheduler-result-v1" || sha256(archive) || log head)

Anyone holding the stored objects recomputes it, without any key: the CLI before it decrypts,
the audit for every ended job.
"""

from __future__ import annotations

from eth_utils import keccak

from .errors import Tampered

DOMAIN = b"metascheduler-result-v1"


def result_digest(archive_sha256: bytes, log_head: str | bytes) -> bytes:
    head = bytes.fromhex(log_head.removeprefix("0x")) if isinstance(log_head, str) else log_head
    if len(archive_sha256) != 32 or len(head) != 32:
        raise ValueError("both the archive hash and the log head are 32 bytes")
    return keccak(DOMAIN + archive_sha256 + head)


def check(expected: str | bytes, archive_sha256: bytes, log_head: str | bytes) -> None:
    want = bytes.fromhex(expected.removeprefix("0x")) if isinstance(expected, str) else expected
    got = result_digest(archive_sha256, log_head)
    if got != want:
        raise Tampered(
            f"the stored results do not match the digest the provider committed "
            f"(0x{want.hex()}; the stored objects give 0x{got.hex()}): they were altered or "
            "replaced"
        )
