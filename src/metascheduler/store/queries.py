"""Read functions over the store, shared by the API and the oracle.

Each takes an open Session and returns ORM rows or small dataclasses; none writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Float, Row, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from metascheduler.chain.types import JobStatus, ProviderStatus
from metascheduler.store.models import ChainCursor, Event, Job, Provider

#: Statuses in which a job holds resources at a provider (placed, accepted or running).
ON_PROVIDER = (int(JobStatus.META_SCHEDULED), int(JobStatus.SCHEDULED), int(JobStatus.RUNNING))
MAX_PAGE = 500


@dataclass(frozen=True)
class Page:
    items: list[Job]
    total: int
    limit: int
    offset: int


def list_jobs(
    s: Session,
    *,
    customer: str | None = None,
    provider: str | None = None,
    status: int | Iterable[int] | None = None,
    limit: int = 50,
    offset: int = 0,
    newest_first: bool = True,
) -> Page:
    """Jobs filtered by customer, provider and status (one or several), a page at a time."""
    q = select(Job)
    if customer:
        q = q.where(Job.customer == customer)
    if provider:
        q = q.where(Job.provider == provider)
    if status is not None:
        wanted = [int(status)] if isinstance(status, int) else [int(x) for x in status]
        q = q.where(Job.status.in_(wanted))
    total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
    limit = max(1, min(limit, MAX_PAGE))
    order = Job.job_id.desc() if newest_first else Job.job_id.asc()
    items = list(s.scalars(q.order_by(order).limit(limit).offset(max(0, offset))))
    return Page(items, int(total), limit, offset)


def get_job(s: Session, job_id: int) -> Job | None:
    return s.get(Job, job_id)


def job_events(s: Session, job_id: int) -> list[Event]:
    """A job's timeline: its events in chain order."""
    q = select(Event).where(Event.job_id == job_id).order_by(Event.block_number, Event.log_index)
    return list(s.scalars(q))


#: Events that move an account's credits without a job.
ACCOUNT_EVENTS = ("Deposited", "Withdrawn")


def account_events(s: Session, address: str) -> list[Event]:
    """In chain order, every event that can move `address`'s (checksummed) market balance:
    its deposits and withdrawals, and every event of the jobs it requested or was placed
    with (a payment goes to the provider the job is placed on when it ends)."""
    placed_here = select(Event.job_id).where(Event.name == "JobPlaced", Event.provider == address)
    own = select(Job.job_id).where(Job.customer == address)
    q = (
        select(Event)
        .where(
            or_(
                Event.job_id.in_(own),
                Event.job_id.in_(placed_here),
                Event.name.in_(ACCOUNT_EVENTS),
            )
        )
        .order_by(Event.block_number, Event.log_index)
    )
    return [
        e
        for e in s.scalars(q)
        if e.name not in ACCOUNT_EVENTS or str(e.args.get("account", "")).lower() == address.lower()
    ]


def job_with_events(s: Session, job_id: int) -> tuple[Job, list[Event]] | None:
    job = get_job(s, job_id)
    return None if job is None else (job, job_events(s, job_id))


@dataclass(frozen=True)
class ProviderLoad:
    provider: Provider
    placed: int = 0  # META_SCHEDULED or SCHEDULED
    running: int = 0
    cpus_used: int = 0
    gpus_used: int = 0
    mem_mb_used: int = 0


def providers_with_load(s: Session, *, status: int | None = None) -> list[ProviderLoad]:
    """Every provider with the jobs it holds (placed or running) and the resources they take."""
    q = select(Provider).order_by(Provider.address)
    if status is not None:
        q = q.where(Provider.status == status)
    provs = list(s.scalars(q))
    load = s.execute(
        select(
            Job.provider,
            Job.status,
            func.count(),
            func.coalesce(func.sum(Job.cpus), 0),
            func.coalesce(func.sum(Job.gpus), 0),
            func.coalesce(func.sum(Job.mem_mb), 0),
        )
        .where(Job.status.in_(ON_PROVIDER))
        .group_by(Job.provider, Job.status)
    ).all()
    acc: dict[str, dict[str, int]] = {}
    for addr, st, n, cpus, gpus, mem in load:
        if addr is None:
            continue
        a = acc.setdefault(addr, {"placed": 0, "running": 0, "c": 0, "g": 0, "m": 0})
        a["running" if st == JobStatus.RUNNING else "placed"] += int(n)
        a["c"] += int(cpus)
        a["g"] += int(gpus)
        a["m"] += int(mem)
    out = []
    for p in provs:
        got = acc.get(p.address)
        if got is None:
            out.append(ProviderLoad(p))
        else:
            out.append(ProviderLoad(p, got["placed"], got["running"], got["c"], got["g"], got["m"]))
    return out


def get_provider(s: Session, address: str) -> Provider | None:
    return s.get(Provider, address)


@dataclass(frozen=True)
class GridStats:
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    providers_by_status: dict[str, int] = field(default_factory=dict)
    cpus_total: int = 0
    cpus_in_use: int = 0
    escrow_live: int = 0
    paid_total: int = 0
    fees_total: int = 0
    unplaceable: int = 0
    last_block: int | None = None


def grid_stats(s: Session) -> GridStats:
    """Counts for a dashboard: jobs and providers per status, capacity and credits."""
    jobs = {
        JobStatus(st).name: int(n)
        for st, n in s.execute(select(Job.status, func.count()).group_by(Job.status))
    }
    provs = {
        ProviderStatus(st).name: int(n)
        for st, n in s.execute(select(Provider.status, func.count()).group_by(Provider.status))
    }
    approved = int(ProviderStatus.APPROVED)
    cpus_total = s.scalar(
        select(func.coalesce(func.sum(Provider.cpus), 0)).where(Provider.status == approved)
    )
    cpus_used = s.scalar(
        select(func.coalesce(func.sum(Job.cpus), 0)).where(Job.status == JobStatus.RUNNING)
    )
    # Credit columns are Uint256 (strings on SQLite): sum them in Python, exactly.
    live = [int(x) for x in s.scalars(select(Job.escrow).where(Job.status < 4))]
    ended = s.execute(select(Job.paid, Job.fee).where(Job.ended_at.is_not(None))).all()
    unplaceable = s.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.status == JobStatus.PENDING, Job.unplaceable_reason.is_not(None))
    )
    cursor = s.scalars(select(ChainCursor.block_number)).first()
    return GridStats(
        jobs_by_status=jobs,
        providers_by_status=provs,
        cpus_total=int(cpus_total or 0),
        cpus_in_use=int(cpus_used or 0),
        escrow_live=sum(live),
        paid_total=sum(int(p or 0) for p, _ in ended),
        fees_total=sum(int(f or 0) for _, f in ended),
        unplaceable=int(unplaceable or 0),
        last_block=cursor,
    )


# ---------------------------------------------------------------------- the oracle's reads


#: The columns of `jobs` that placement reads (oracle.inputs.JobFields, terms, unplaceable).
PLACEMENT_COLUMNS = (
    "job_id",
    "provider",
    "status",
    "escrow",
    "max_price_per_minute",
    "cpus",
    "gpus",
    "mem_mb",
    "spec_hash",
    "labels",
    "time_limit_minutes",
    "requested_at",
    "started_at",
    "unplaceable_reason",
    "returns",
    "updated_block",
)

#: Reasons the contract gives when it takes a placement back (`JobReturned`); any other reason
#: is the provider's own refusal.
RECLAIM_REASONS = frozenset({"not accepted in time", "not started in time", "provider banned"})

#: The oracle's order over pending jobs when more are pending than it reads in a tick: those it
#: found placeable before those it did not, then the largest escrow first (what a flood of
#: requests must lock up to get ahead of a funded job), then the oldest.
PRIORITY = (
    Job.unplaceable_reason.is_not(None),
    cast(Job.escrow, Float).desc(),
    Job.job_id,
)


def placement_rows(
    s: Session,
    *,
    job_ids: Sequence[int] | None = None,
    limit: int | None = None,
    unjudged_only: bool = False,
) -> list[Row[Any]]:
    """PENDING jobs (or the given ones) in the oracle's `PRIORITY`, as plain rows of
    `PLACEMENT_COLUMNS`; with `unjudged_only`, only those not marked unplaceable.

    The oracle reads thousands of these each tick while a backlog drains; a plain row of the
    columns it needs costs a fraction of an ORM object (and of the spec bytes it does not)."""
    table = Job.__table__
    q = select(*(table.c[c] for c in PLACEMENT_COLUMNS)).order_by(*PRIORITY)
    if job_ids is None:
        q = q.where(table.c.status == JobStatus.PENDING)
        if unjudged_only:
            q = q.where(table.c.unplaceable_reason.is_(None))
    else:
        q = q.where(table.c.job_id.in_(list(job_ids)))
    if limit:
        q = q.limit(limit)
    return list(s.execute(q).all())


def unplaceable_rows_after(s: Session, after: tuple[int, int], limit: int) -> list[Row[Any]]:
    """PENDING jobs marked unplaceable whose (updated_block, job_id) comes after `after`, in
    that order, as plain rows of `PLACEMENT_COLUMNS`: the oracle's verdicts that may no longer
    hold, since the job changed after they were made (or, from the start, all of them)."""
    table = Job.__table__
    block, job_id = after
    q = (
        select(*(table.c[c] for c in PLACEMENT_COLUMNS))
        .where(
            table.c.status == JobStatus.PENDING,
            table.c.unplaceable_reason.is_not(None),
            or_(
                table.c.updated_block > block,
                and_(table.c.updated_block == block, table.c.job_id > job_id),
            ),
        )
        .order_by(table.c.updated_block, table.c.job_id)
        .limit(limit)
    )
    return list(s.execute(q).all())


def refusals(s: Session, job_ids: Sequence[int]) -> dict[int, frozenset[str]]:
    """The providers (lower case) that refused each of `job_ids`, from its JobReturned events."""
    out: dict[int, set[str]] = {}
    q = select(Event.job_id, Event.provider, Event.args).where(
        Event.name == "JobReturned", Event.job_id.in_(list(job_ids))
    )
    for job_id, provider, args in s.execute(q):
        if job_id is not None and provider and args.get("reason") not in RECLAIM_REASONS:
            out.setdefault(job_id, set()).add(provider.lower())
    return {jid: frozenset(p) for jid, p in out.items()}


def jobs_on_providers(s: Session) -> list[Job]:
    """Jobs placed, accepted or running somewhere."""
    return list(s.scalars(select(Job).where(Job.status.in_(ON_PROVIDER)).order_by(Job.job_id)))


def jobs_in_status(s: Session, statuses: Sequence[int]) -> list[Job]:
    return list(s.scalars(select(Job).where(Job.status.in_(list(statuses))).order_by(Job.job_id)))
