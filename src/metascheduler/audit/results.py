"""Stored results checked against the digest each completion committed on chain.

The chain holds only the digest (`JobEnded.resultDigest`); the ciphertext lives with the API: the
log chunks in its results database, the encrypted output archive in its object store. Checking
them needs no key. Every chunk's digest is recomputed from its header and ciphertext and the
chunks are walked as the API and the customer walk them (the placed provider's signatures, the
sequence, the links, a final chunk); the archive's bytes are hashed; the digest they give is
compared with the committed one. What differs is named: a chunk whose bytes no longer hash to
the digest recorded when the API accepted it, an archive whose bytes are not those uploaded, an
object missing.

Whoever reads the API's results database and object store can run it (the grid's operator, or
an auditor given read access to both); it takes the API's own settings. Without them the audit
is the chain's alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from metascheduler.errors import MetaschedulerError
from metascheduler.results import store as rstore
from metascheduler.results.digest import result_digest
from metascheduler.results.errors import ChunkRefused
from metascheduler.results.logchain import ZERO_DIGEST, Chunk, ChunkHeader, Deployment, check_chunk
from metascheduler.results.objects import ObjectStore
from metascheduler.store.db import make_engine, session_factory

#: Differences named per job at most (a broken chain can break at every chunk after the first).
MAX_DIFFERENCES = 10


class ResultsSourceError(MetaschedulerError):
    """The API's results database or object store cannot be read; the message says which."""

    kind = "unreachable"


@dataclass(frozen=True)
class StoredOutput:
    key: str
    state: str
    size: int | None
    #: What the provider declared when it completed the upload (0x hex).
    sha256: str | None


class StoredResults:
    """The ciphertext the API holds: its results database and its object store."""

    def __init__(self, sessions: sessionmaker[Session], objects: ObjectStore | None) -> None:
        self._sessions = sessions
        self.objects = objects

    @classmethod
    def from_settings(cls, settings: Any) -> StoredResults:
        """From the API's settings (`ApiSettings`): `results_database_url` (or its default
        beside the store) and the `object_store_*` fields."""
        objects = None
        if settings.object_store_endpoint:
            access, secret = settings.object_store_access_key, settings.object_store_secret_key
            if access is None or secret is None:
                raise ResultsSourceError(
                    "object_store_endpoint is set but its access or secret key is not: set "
                    "object_store_access_key and object_store_secret_key"
                )
            objects = ObjectStore(
                settings.object_store_endpoint,
                settings.object_store_bucket,
                access.get_secret_value(),
                secret.get_secret_value(),
                settings.object_store_region,
            )
        return cls(session_factory(make_engine(settings.results_url())), objects)

    def chunks(self, job_id: int) -> list[tuple[Chunk, str]]:
        """The job's log chunks in order, each with the digest recorded when it was accepted."""
        try:
            with self._sessions() as s:
                rows = s.scalars(
                    select(rstore.LogChunkRow)
                    .where(rstore.LogChunkRow.job_id == job_id)
                    .order_by(rstore.LogChunkRow.seq)
                ).all()
                return [
                    (Chunk(ChunkHeader(**r.header), r.ciphertext, r.signature), r.digest)
                    for r in rows
                ]
        except SQLAlchemyError as exc:
            raise ResultsSourceError(_db_error(exc)) from None

    def output(self, job_id: int) -> StoredOutput | None:
        try:
            with self._sessions() as s:
                row = s.get(rstore.OutputRow, job_id)
                if row is None:
                    return None
                return StoredOutput(row.key, row.state, row.size, row.sha256)
        except SQLAlchemyError as exc:
            raise ResultsSourceError(_db_error(exc)) from None


def _db_error(exc: SQLAlchemyError) -> str:
    return (
        f"cannot read the API's results database ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0]}): give the settings of the API that stores the results"
    )


@dataclass(frozen=True)
class ResultsCheck:
    """One job's stored results against the digest its completion committed."""

    job_id: int
    committed: str
    #: The digest the stored objects give; None when they cannot give one (an object missing).
    stored: str | None
    log_head: str | None
    archive_sha256: str | None
    differences: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "committed": self.committed,
            "stored": self.stored,
            "log_head": self.log_head,
            "archive_sha256": self.archive_sha256,
            "differences": list(self.differences),
        }


def check_job_results(
    stored: StoredResults, deployment: Deployment, job_id: int, provider: str, committed: str
) -> ResultsCheck:
    """Recomputes `job_id`'s result digest from the stored ciphertext and says what differs
    from `committed` (0x hex) and from what the API recorded when it accepted each object."""
    found: list[str] = []
    head = _log_head(stored, deployment, job_id, provider, found)
    sha = _archive_sha256(stored, job_id, found)
    digest = None
    if head is not None and sha is not None:
        digest = "0x" + result_digest(sha, head).hex()
        if digest != committed.lower():
            found.append(
                f"the stored objects give the result digest {digest}, not the {committed} "
                "committed on chain"
            )
    if len(found) > MAX_DIFFERENCES:
        found[MAX_DIFFERENCES:] = [f"and {len(found) - MAX_DIFFERENCES} more"]
    return ResultsCheck(
        job_id,
        committed,
        digest,
        head,
        None if sha is None else "0x" + sha.hex(),
        tuple(found),
    )


def _log_head(
    stored: StoredResults, deployment: Deployment, job_id: int, provider: str, found: list[str]
) -> str | None:
    chunks = stored.chunks(job_id)
    if not chunks:
        found.append("no log chunk is stored")
        return None
    prev = ZERO_DIGEST
    for seq, (chunk, recorded) in enumerate(chunks):
        got = chunk.digest_hex()
        if got != recorded:
            # Its signature and link would fail too: the altered bytes are the news.
            found.append(
                f"log chunk seq {chunk.header.seq}: its stored bytes hash to {got}, not the "
                f"{recorded} recorded when the API accepted it"
            )
        else:
            try:
                check_chunk(
                    chunk,
                    deployment=deployment,
                    job_id=job_id,
                    provider=provider,
                    expected_seq=seq,
                    prev=prev,
                )
            except ChunkRefused as exc:
                found.append(f"log chunk seq {chunk.header.seq}: {exc}")
        prev = got
    last = chunks[-1][0].header
    if not last.final:
        found.append(f"the stored log has no final chunk (the last is seq {last.seq})")
    return prev


def _archive_sha256(stored: StoredResults, job_id: int, found: list[str]) -> bytes | None:
    out = stored.output(job_id)
    if out is None or out.state != "stored":
        found.append(
            "no output archive is recorded as stored"
            + (f" (its upload is {out.state})" if out is not None else "")
        )
        return None
    if stored.objects is None:
        raise ResultsSourceError(
            "the API's settings name no object store (object_store_endpoint): the output "
            "archives cannot be read"
        )
    got = stored.objects.sha256(out.key)
    if got is None:
        found.append(f"the output archive {out.key} is missing from the object store")
        return None
    size, sha = got
    digest = "0x" + sha.hex()
    if digest != out.sha256 or size != out.size:
        found.append(
            f"the output archive {out.key}: its stored bytes ({size:,} bytes) hash to {digest}, "
            f"not the {out.sha256} ({out.size or 0:,} bytes) uploaded"
        )
    return sha
