"""The API's record of results: log chunks (ciphertext, as sealed) and where each job's
encrypted outputs are stored. Its own database (a SQLite file by default, beside the store the
oracle writes), because log appends are frequent and a shared SQLite file would make them and the
oracle's ingestion wait on each other. The tables are made by the store's migrations, on their
`results` branch (`upgrade_to_head(url, RESULTS)`, at the API's start-up).

Nothing here can read a log line or an output file: only ciphertext, its size and its digests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    delete,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .errors import ChunkRefused
from .logchain import ZERO_DIGEST, Chunk, ChunkHeader, Deployment, check_chunk, signer_of


class ResultsBase(DeclarativeBase):
    metadata = MetaData(
        naming_convention={"pk": "pk_%(table_name)s", "ix": "ix_%(column_0_label)s"}
    )
    type_annotation_map = {dict[str, Any]: JSON}


class LogChunkRow(ResultsBase):
    __tablename__ = "log_chunks"

    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    digest: Mapped[str] = mapped_column(String(66))
    header: Mapped[dict[str, Any]] = mapped_column(JSON)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    final: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[float] = mapped_column(Float)


class OutputRow(ResultsBase):
    """A job's encrypted output archive in the object store: uploading, then stored."""

    __tablename__ = "job_outputs"

    job_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    key: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    declared_size: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(66))
    upload_id: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Appended:
    seq: int
    digest: str
    duplicate: bool


@dataclass(frozen=True)
class LogSummary:
    chunks: int
    bytes: int
    final: bool
    exit_code: int | None
    head: str


def log_summary(s: Session, job_id: int) -> LogSummary:
    count, size = s.execute(
        select(func.count(), func.coalesce(func.sum(func.length(LogChunkRow.ciphertext)), 0)).where(
            LogChunkRow.job_id == job_id
        )
    ).one()
    last = s.scalars(
        select(LogChunkRow)
        .where(LogChunkRow.job_id == job_id)
        .order_by(LogChunkRow.seq.desc())
        .limit(1)
    ).first()
    return LogSummary(
        chunks=int(count),
        bytes=int(size),
        final=bool(last and last.final),
        exit_code=last.header.get("exit_code") if last and last.final else None,
        head=last.digest if last else ZERO_DIGEST,
    )


def append_chunk(
    s: Session,
    chunk: Chunk,
    *,
    deployment: Deployment,
    job_id: int,
    provider: str,
    max_bytes: int,
) -> Appended:
    """Records the next chunk of a job's log after `check_chunk`. A chunk already recorded (an
    agent retrying after a lost acknowledgement) is acknowledged again, not stored twice; any
    other chunk that is not exactly the next one is refused. The log is the placed provider's:
    its first chunk replaces a log an earlier placement of the job began (a provider the job
    was taken from, whose run is not the one billed). Commits."""
    digest = chunk.digest_hex()
    h = chunk.header
    if h.job_id == job_id and h.seq >= 0:
        same = s.get(LogChunkRow, (job_id, h.seq))
        if same is not None and same.digest == digest:
            return Appended(h.seq, digest, duplicate=True)
        if h.seq == 0 and same is not None and _earlier_placement(same, chunk, provider):
            s.execute(delete(LogChunkRow).where(LogChunkRow.job_id == job_id))
    summary = log_summary(s, job_id)
    if summary.final:
        raise ChunkRefused(
            "gap",
            f"the log of job {job_id} already ended (final chunk at seq {summary.chunks - 1})",
        )
    check_chunk(
        chunk,
        deployment=deployment,
        job_id=job_id,
        provider=provider,
        expected_seq=summary.chunks,
        prev=summary.head,
    )
    if summary.bytes + len(chunk.ciphertext) > max_bytes:
        raise ChunkRefused(
            "too_large",
            f"the log of job {job_id} would pass the grid's cap of {max_bytes:,} bytes: "
            "the rest of it is refused",
        )
    s.add(
        LogChunkRow(
            job_id=job_id,
            seq=h.seq,
            digest=digest,
            header=chunk.to_wire()["header"],
            ciphertext=chunk.ciphertext,
            signature=chunk.signature,
            final=h.final,
            received_at=time.time(),
        )
    )
    try:
        s.commit()
    except IntegrityError:
        # Another request stored this seq between our read and our write: the same chunk is a
        # duplicate, another one is a replay.
        s.rollback()
        same = s.get(LogChunkRow, (job_id, h.seq))
        if same is not None and same.digest == digest:
            return Appended(h.seq, digest, duplicate=True)
        raise ChunkRefused(
            "replayed", f"log chunk seq {h.seq} of job {job_id} was already taken"
        ) from None
    return Appended(h.seq, digest, duplicate=False)


def _earlier_placement(first: LogChunkRow, chunk: Chunk, provider: str) -> bool:
    """Whether the stored log, beginning with `first`, is another provider's, and `chunk` the
    placed provider's (only it may replace that log)."""
    stored = Chunk(ChunkHeader(**first.header), first.ciphertext, first.signature)
    try:
        return (
            signer_of(chunk).lower() == provider.lower()
            and signer_of(stored).lower() != provider.lower()
        )
    except ChunkRefused:
        return False


def read_chunks(s: Session, job_id: int, *, after: int, limit: int) -> list[Chunk]:
    rows = s.scalars(
        select(LogChunkRow)
        .where(LogChunkRow.job_id == job_id, LogChunkRow.seq > after)
        .order_by(LogChunkRow.seq)
        .limit(limit)
    ).all()
    return [Chunk(ChunkHeader(**r.header), r.ciphertext, r.signature) for r in rows]
