"""A job's log as a chain of sealed chunks.

The placed provider's agent gathers log records (time, stream, line, and whether the line is the
agent's own message rather than the job's) into chunks. Each chunk is encrypted with the job's
AES-GCM key and signed by the provider over its digest:

    digest = keccak256(canonical header JSON || keccak256(ciphertext))

The header binds the chunk to the deployment (chain id, market), the job, its sequence number and
the digest of the chunk before it (zero for the first). So a chunk can be neither forged (the
signature), nor moved to another job or deployment (the binding), nor replayed, reordered or left
out (the sequence number and the link to its predecessor). The last chunk is marked final and
carries the job's exit code; its digest, the head of the chain, goes into the result digest.

The API checks everything but the plaintext (`check_chunk`); the customer checks it all again and
decrypts (`LogReader`), trusting the API for nothing.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from .errors import ChunkRefused, Tampered
from .keys import unwrap

VERSION = 1
ZERO_DIGEST = "0x" + "00" * 32
STREAMS = ("stdout", "stderr")


@dataclass(frozen=True)
class LogRecord:
    """One line: unix time it was read, the stream, the text (no newline), and `agent` when it is
    a message of the provider's agent (staging, image fetch, kill) rather than the job's."""

    t: float
    stream: str
    line: str
    agent: bool = False

    def to_list(self) -> list[Any]:
        return [self.t, self.stream, self.line, self.agent]

    @classmethod
    def from_list(cls, item: list[Any]) -> LogRecord:
        t, stream, line, agent = item
        return cls(float(t), str(stream), str(line), bool(agent))


@dataclass(frozen=True)
class Deployment:
    """Which market on which chain: every signed result names it, so nothing crosses over."""

    chain_id: int
    market: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "market", to_checksum_address(self.market))


@dataclass(frozen=True)
class ChunkHeader:
    version: int
    chain_id: int
    market: str
    job_id: int
    seq: int
    prev: str
    final: bool
    exit_code: int | None
    records: int
    wrapped_key: str
    nonce: str

    def canonical(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Chunk:
    header: ChunkHeader
    ciphertext: bytes
    signature: bytes

    def digest(self) -> bytes:
        return chunk_digest(self.header, self.ciphertext)

    def digest_hex(self) -> str:
        return "0x" + self.digest().hex()

    def to_wire(self) -> dict[str, Any]:
        return {
            "header": asdict(self.header),
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
            "signature": "0x" + self.signature.hex(),
        }

    @classmethod
    def from_wire(cls, body: Any) -> Chunk:
        """A chunk from its JSON form; anything off in shape or type is ChunkRefused(malformed)."""
        try:
            h = dict(body["header"])
            header = ChunkHeader(**h)
            ints = ("version", "chain_id", "job_id", "seq", "records")
            for name in ints:
                v = getattr(header, name)
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"{name} must be a non-negative integer")
            if header.exit_code is not None and (
                isinstance(header.exit_code, bool) or not isinstance(header.exit_code, int)
            ):
                raise ValueError("exit_code must be an integer or null")
            if not isinstance(header.final, bool):
                raise ValueError("final must be true or false")
            for name in ("market", "prev", "wrapped_key", "nonce"):
                if not isinstance(getattr(header, name), str):
                    raise ValueError(f"{name} must be a string")
            _hex32(header.prev, "prev")
            ciphertext = base64.b64decode(body["ciphertext"], validate=True)
            signature = bytes.fromhex(str(body["signature"]).removeprefix("0x"))
        except ChunkRefused:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ChunkRefused("malformed", f"malformed log chunk: {exc}") from None
        return cls(header, ciphertext, signature)


def _hex32(value: str, name: str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError(f"{name} must be 32 bytes of hex")
    return raw


def chunk_digest(header: ChunkHeader, ciphertext: bytes) -> bytes:
    return keccak(header.canonical() + keccak(ciphertext))


def _records_bytes(records: list[LogRecord]) -> bytes:
    return json.dumps([r.to_list() for r in records], separators=(",", ":")).encode()


@dataclass
class ChunkSealer:
    """The provider's side: seals records into the next chunk of one job's chain. `seq` and
    `prev` are the position to continue from (the agent's spool keeps them across restarts)."""

    account: LocalAccount
    deployment: Deployment
    job_id: int
    job_key: bytes
    wrapped_key: bytes
    seq: int = 0
    prev: str = ZERO_DIGEST

    def seal(
        self, records: list[LogRecord], *, final: bool = False, exit_code: int | None = None
    ) -> Chunk:
        header = ChunkHeader(
            version=VERSION,
            chain_id=self.deployment.chain_id,
            market=self.deployment.market,
            job_id=self.job_id,
            seq=self.seq,
            prev=self.prev,
            final=final,
            exit_code=exit_code if final else None,
            records=len(records),
            wrapped_key=self.wrapped_key.hex(),
            nonce=os.urandom(12).hex(),
        )
        ciphertext = AESGCM(self.job_key).encrypt(
            bytes.fromhex(header.nonce), _records_bytes(records), header.canonical()
        )
        digest = chunk_digest(header, ciphertext)
        signature = bytes(self.account.sign_message(encode_defunct(primitive=digest)).signature)
        self.seq += 1
        self.prev = "0x" + digest.hex()
        return Chunk(header, ciphertext, signature)


def signer_of(chunk: Chunk) -> str:
    try:
        return str(
            Account.recover_message(
                encode_defunct(primitive=chunk.digest()), signature=chunk.signature
            )
        )
    except Exception:
        raise ChunkRefused("forged", "log chunk signature is not a valid signature") from None


def check_chunk(
    chunk: Chunk,
    *,
    deployment: Deployment,
    job_id: int,
    provider: str,
    expected_seq: int,
    prev: str,
) -> None:
    """Everything about a chunk but its plaintext: for this deployment and job, signed by the
    job's placed provider, next in sequence and linked to the chunk before it."""
    h = chunk.header
    if h.version != VERSION:
        raise ChunkRefused("malformed", f"log chunk version {h.version} is not {VERSION}")
    if h.chain_id != deployment.chain_id or h.market.lower() != deployment.market.lower():
        raise ChunkRefused(
            "wrong_deployment",
            f"log chunk is for market {h.market} on chain {h.chain_id}, not "
            f"{deployment.market} on chain {deployment.chain_id}",
        )
    if h.job_id != job_id:
        raise ChunkRefused("wrong_job", f"log chunk is for job {h.job_id}, not job {job_id}")
    signer = signer_of(chunk)
    if signer.lower() != provider.lower():
        raise ChunkRefused(
            "forged",
            f"log chunk of job {job_id} is signed by {signer}, not by its placed provider "
            f"{to_checksum_address(provider)}",
        )
    if h.seq < expected_seq:
        raise ChunkRefused("replayed", f"log chunk seq {h.seq} of job {job_id} was already taken")
    if h.seq > expected_seq:
        raise ChunkRefused(
            "gap", f"log chunk seq {h.seq} of job {job_id} skips ahead: expected seq {expected_seq}"
        )
    if h.prev.lower() != prev.lower():
        raise ChunkRefused(
            "out_of_order",
            f"log chunk seq {h.seq} of job {job_id} does not follow the chunk before it "
            f"(links to {h.prev}, the chain's head is {prev})",
        )


@dataclass
class LogReader:
    """The customer's side: checks each chunk in order (as the API did, trusting it for nothing)
    and decrypts it with the job key unwrapped by the wallet's private key."""

    private_key: bytes
    deployment: Deployment
    job_id: int
    provider: str
    seq: int = 0
    head: str = ZERO_DIGEST
    final: bool = False
    exit_code: int | None = None
    _keys: dict[str, bytes] = field(default_factory=dict)

    def add(self, chunk: Chunk) -> list[LogRecord]:
        if self.final:
            raise ChunkRefused(
                "gap",
                f"log of job {self.job_id} goes on past its final chunk (seq {chunk.header.seq})",
            )
        check_chunk(
            chunk,
            deployment=self.deployment,
            job_id=self.job_id,
            provider=self.provider,
            expected_seq=self.seq,
            prev=self.head,
        )
        h = chunk.header
        key = self._keys.get(h.wrapped_key)
        if key is None:
            key = unwrap(self.private_key, bytes.fromhex(h.wrapped_key))
            self._keys[h.wrapped_key] = key
        try:
            plain = AESGCM(key).decrypt(bytes.fromhex(h.nonce), chunk.ciphertext, h.canonical())
            records = [LogRecord.from_list(item) for item in json.loads(plain)]
        except (InvalidTag, ValueError, TypeError) as exc:
            raise Tampered(
                f"log chunk seq {h.seq} of job {self.job_id} does not decrypt: {exc or 'bad tag'}"
            ) from None
        if len(records) != h.records:
            raise Tampered(
                f"log chunk seq {h.seq} of job {self.job_id} holds {len(records)} records, its "
                f"header says {h.records}"
            )
        self.seq += 1
        self.head = chunk.digest_hex()
        if h.final:
            self.final, self.exit_code = True, h.exit_code
        return records
