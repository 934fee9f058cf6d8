"""Reads the API needs that `store.queries` does not offer (cursor pages, full credit totals,
the unplaceable list, the ingest position). Read-only, like `store.queries`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from metascheduler.chain.types import JobStatus, ProviderStatus
from metascheduler.store.ingest import CURSOR
from metascheduler.store.models import Block, ChainCursor, Job, Provider

LIVE = [int(s) for s in JobStatus if not s.terminal]


@dataclass(frozen=True)
class JobsPage:
    items: list[Job]
    total: int
    next_cursor: int | None


def jobs_page(
    s: Session,
    *,
    customer: str | None,
    provider: str | None,
    statuses: Sequence[int],
    limit: int,
    offset: int,
    cursor: int | None,
) -> JobsPage:
    """Jobs newest first. `cursor` (a job id from a previous page's `next_cursor`) keeps pages
    stable while new jobs arrive; `offset` is for jumping; `total` ignores both."""
    q = select(Job)
    if customer:
        q = q.where(Job.customer == customer)
    if provider:
        q = q.where(Job.provider == provider)
    if statuses:
        q = q.where(Job.status.in_(list(statuses)))
    total = int(s.scalar(select(func.count()).select_from(q.subquery())) or 0)
    if cursor is not None:
        q = q.where(Job.job_id < cursor)
    # One row more than asked tells whether a next page exists without a second count.
    rows = list(s.scalars(q.order_by(Job.job_id.desc()).limit(limit + 1).offset(offset)))
    more = len(rows) > limit
    items = rows[:limit]
    return JobsPage(items, total, items[-1].job_id if more and items else None)


@dataclass(frozen=True)
class CreditTotals:
    escrowed: int
    paid: int
    fees: int
    refunded: int


def job_counts(s: Session) -> dict[str, int]:
    """Every JobStatus name with its count (zeros included, so a chart keeps its bars)."""
    counts = {st.name: 0 for st in JobStatus}
    for status, n in s.execute(select(Job.status, func.count()).group_by(Job.status)):
        counts[JobStatus(status).name] = int(n)
    return counts


def credit_totals(s: Session) -> CreditTotals:
    # Credit columns are Uint256 (decimal strings on SQLite): summed in Python, exactly.
    escrowed = sum(int(x) for x in s.scalars(select(Job.escrow).where(Job.status.in_(LIVE))))
    paid = fees = refunded = 0
    for p, f, r in s.execute(
        select(Job.paid, Job.fee, Job.refunded).where(Job.ended_at.is_not(None))
    ):
        paid += int(p or 0)
        fees += int(f or 0)
        refunded += int(r or 0)
    return CreditTotals(escrowed, paid, fees, refunded)


def unplaceable_jobs(s: Session, limit: int = 100) -> list[tuple[int, str]]:
    """PENDING jobs the oracle marked unplaceable, oldest first."""
    q = (
        select(Job.job_id, Job.unplaceable_reason)
        .where(Job.status == int(JobStatus.PENDING), Job.unplaceable_reason.is_not(None))
        .order_by(Job.job_id)
        .limit(limit)
    )
    return [(int(j), str(r)) for j, r in s.execute(q)]


@dataclass(frozen=True)
class ProviderCounts:
    total: int
    approved: int
    alive: int


def provider_counts(s: Session, alive_since: float) -> ProviderCounts:
    """Providers registered, approved, and alive (heartbeat at or after `alive_since`)."""
    total = int(s.scalar(select(func.count()).select_from(Provider)) or 0)
    approved = int(
        s.scalar(
            select(func.count())
            .select_from(Provider)
            .where(Provider.status == int(ProviderStatus.APPROVED))
        )
        or 0
    )
    alive = int(
        s.scalar(
            select(func.count())
            .select_from(Provider)
            .where(
                Provider.last_heartbeat_at.is_not(None), Provider.last_heartbeat_at > alive_since
            )
        )
        or 0
    )
    return ProviderCounts(total, approved, alive)


def ingest_position(s: Session) -> tuple[int, int | None] | None:
    """(block number, block time) of the ingest cursor; None before the first ingest."""
    c = s.get(ChainCursor, CURSOR)
    if c is None:
        return None
    block = s.get(Block, c.block_number)
    return c.block_number, (block.timestamp if block is not None else None)


def running_cpus_by_provider(s: Session) -> dict[str, int]:
    """CPUs of RUNNING jobs per provider (store.queries' load counts placed jobs too)."""
    q = (
        select(Job.provider, func.coalesce(func.sum(Job.cpus), 0))
        .where(Job.status == int(JobStatus.RUNNING), Job.provider.is_not(None))
        .group_by(Job.provider)
    )
    return {str(p): int(n) for p, n in s.execute(q)}
