"""The HTTP API: thin routes over `store.queries` and `api.queries`; shapes in `api.schemas`."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from eth_utils import to_checksum_address
from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.responses import JSONResponse
from pydantic import StringConstraints
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from metascheduler.chain.types import JobStatus
from metascheduler.heartbeat import Heartbeat
from metascheduler.store import queries as store_queries

from . import heartbeats, queries
from .context import ApiContext, get_context, get_session
from .schemas import (
    MAX_INT,
    AccountStatement,
    Credits,
    Health,
    HeartbeatAccepted,
    HeartbeatBody,
    JobDetail,
    JobPage,
    Problem,
    ProviderOut,
    Stats,
    Unplaceable,
)
from .views import account_statement_view, job_detail, job_summary, provider_out

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api")

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
#: A status filter is a JobStatus name or number; the pattern is built from the enum itself.
STATUS_PATTERN = (
    "^(" + "|".join([*(s.name for s in JobStatus), *(str(s.value) for s in JobStatus)]) + ")$"
)
StatusFilter = Annotated[str, StringConstraints(pattern=STATUS_PATTERN)]
MAX_PAGE = 500

Ctx = Annotated[ApiContext, Depends(get_context)]
Db = Annotated[Session, Depends(get_session)]


def _status_code(value: str) -> int:
    return int(value) if value.isdigit() else int(JobStatus[value])


def _address(value: str | None) -> str | None:
    return to_checksum_address(value) if value else None


@router.get(
    "/jobs",
    response_model=JobPage,
    summary="List jobs, newest first",
    description=(
        "Filter by customer, provider and state (repeat `status` for several); page with "
        "`limit` and `offset`, or with `cursor` (the previous page's `next_cursor`), which "
        "stays stable while new jobs arrive."
    ),
)
def list_jobs(
    db: Db,
    customer: Annotated[
        str | None, Query(pattern=ADDRESS_PATTERN, description="customer address")
    ] = None,
    provider: Annotated[
        str | None, Query(pattern=ADDRESS_PATTERN, description="provider address")
    ] = None,
    status_: Annotated[
        list[StatusFilter] | None,
        Query(alias="status", description="JobStatus name (RUNNING) or number (3); repeatable"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    cursor: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="return jobs with ids below this")
    ] = None,
) -> JobPage:
    page = queries.jobs_page(
        db,
        customer=_address(customer),
        provider=_address(provider),
        statuses=sorted({_status_code(v) for v in status_ or []}),
        limit=limit,
        offset=offset,
        cursor=cursor,
    )
    return JobPage(
        items=[job_summary(j) for j in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
        next_cursor=page.next_cursor,
    )


@router.get(
    "/jobs/{job_id}",
    response_model=JobDetail,
    summary="One job with its timeline",
    description="The job and every event of it in chain order: state changes, credits moved.",
    responses={404: {"model": Problem, "description": "no such job in the store"}},
)
def get_job(db: Db, job_id: Annotated[int, Path(ge=1, le=MAX_INT)]) -> JobDetail:
    found = store_queries.job_with_events(db, job_id)
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"job {job_id} is not in the store: it does not exist on chain, or ingestion "
            "has not reached it yet (see /api/health for the ingest cursor)",
        )
    return job_detail(*found)


@router.get(
    "/accounts/{address}",
    response_model=AccountStatement,
    summary="An account's credits, movement by movement",
    description=(
        "Deposits, withdrawals, the escrow and top-ups of the account's jobs, their refunds, "
        "and payments to it as a provider, in chain order with the balance after each, rebuilt "
        "from the store's events (`metascheduler audit account` checks the same against the "
        "chain). An account with no activity has no movements."
    ),
)
def account_statement(
    db: Db, address: Annotated[str, Path(pattern=ADDRESS_PATTERN)]
) -> AccountStatement:
    account = to_checksum_address(address)
    return account_statement_view(account, store_queries.account_events(db, account))


@router.get(
    "/providers",
    response_model=list[ProviderOut],
    summary="Providers with capacity, prices, liveness and load",
    description=(
        "`alive` is true when the provider's last accepted heartbeat is younger than the "
        "heartbeat timeout; `load` counts the jobs the chain placed on it."
    ),
)
def list_providers(ctx: Ctx, db: Db) -> list[ProviderOut]:
    since = ctx.alive_since()
    running = queries.running_cpus_by_provider(db)
    return [
        provider_out(pl, since, running.get(pl.provider.address, 0))
        for pl in store_queries.providers_with_load(db)
    ]


@router.get("/stats", response_model=Stats, summary="Grid statistics")
def stats(ctx: Ctx, db: Db) -> Stats:
    counts = queries.job_counts(db)
    c = queries.credit_totals(db)
    p = queries.provider_counts(db, ctx.alive_since())
    return Stats(
        jobs_total=sum(counts.values()),
        jobs_by_status=counts,
        jobs_by_state=counts,
        credits=Credits(
            escrowed=c.escrowed,
            paid=c.paid,
            fees=c.fees,
            refunded=c.refunded,
            spent=c.paid + c.fees,
        ),
        providers_total=p.total,
        providers_approved=p.approved,
        providers_alive=p.alive,
        unplaceable=[Unplaceable(job_id=j, reason=r) for j, r in queries.unplaceable_jobs(db)],
    )


@router.get(
    "/health",
    response_model=Health,
    summary="Store reachability and ingestion lag",
    responses={503: {"model": Health, "description": "the store is unreachable"}},
)
def health(ctx: Ctx) -> Health | JSONResponse:
    try:
        with ctx.sessions() as s:
            s.execute(text("SELECT 1"))
            pos = queries.ingest_position(s)
    except Exception as exc:
        body = Health(
            status="down",
            store_reachable=False,
            cursor_block=None,
            cursor_block_time=None,
            head_block=None,
            lag_blocks=None,
            detail=f"the store at {make_url(ctx.settings.database_url).render_as_string()} "
            f"did not answer: {type(exc).__name__}",
        )
        return JSONResponse(body.model_dump(), status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    head = ctx.head.block_number()
    block, block_time = pos if pos else (None, None)
    detail = None
    if head is None:
        detail = f"the chain at {ctx.settings.rpc_url} did not answer"
    elif block is None:
        detail = "nothing ingested yet: is the oracle running?"
    return Health(
        status="ok" if head is not None else "degraded",
        store_reachable=True,
        cursor_block=block,
        cursor_block_time=block_time,
        head_block=head,
        lag_blocks=max(0, head - block) if head is not None and block is not None else None,
        detail=detail,
    )


@router.post(
    "/heartbeats",
    response_model=HeartbeatAccepted,
    summary="Accept a provider's signed heartbeat",
    description=(
        "The body is what `metascheduler.heartbeat.sign` produces. 400: malformed; 401: the "
        "signature is not the named provider's; 403: not a registered provider (a banned one "
        "is still heard: its running jobs are billed); "
        "409: seq not after the last accepted one, timestamp too far from this server's "
        "clock, or signed for another market or chain."
    ),
    responses={
        400: {"model": Problem, "description": "malformed body"},
        401: {"model": Problem, "description": "bad signature"},
        403: {"model": Problem, "description": "unknown provider"},
        409: {
            "model": Problem,
            "description": "replayed seq, stale timestamp, or for another market/chain",
        },
        503: {"model": Problem, "description": "the API cannot tell its chain id"},
    },
)
async def post_heartbeat(ctx: Ctx, body: HeartbeatBody) -> HeartbeatAccepted | JSONResponse:
    # Sync DB and RPC work goes to the thread pool, like the sync routes above.
    return await run_in_threadpool(_accept_heartbeat, ctx, body)


def _accept_retrying(
    ctx: ApiContext, body: HeartbeatBody, market: str, chain_id: int, attempts: int = 5
) -> tuple[Heartbeat, int]:
    """SQLite refuses at once to upgrade a read transaction to a write when another process
    (the oracle's ingester) committed in between: "database is locked", with no busy wait.
    The heartbeat's read-then-write is short and idempotent, so it is simply tried again."""
    for attempt in range(attempts):
        try:
            with ctx.sessions() as s:
                return heartbeats.accept(s, body, market=market, chain_id=chain_id, now=time.time())
        except OperationalError as exc:
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _accept_heartbeat(ctx: ApiContext, body: HeartbeatBody) -> HeartbeatAccepted | JSONResponse:
    market = ctx.settings.market_address
    if not market:
        return _problem(503, "this API has no market_address set: it cannot accept heartbeats")
    try:
        chain_id = ctx.settings.chain_id or ctx.head.chain_id()
    except Exception as exc:
        return _problem(
            503, f"cannot read the chain id from {ctx.settings.rpc_url} ({exc}): set chain_id"
        )
    try:
        hb, received = _accept_retrying(ctx, body, market, chain_id)
    except heartbeats.Rejected as rej:
        ctx.metrics.heartbeats_rejected.labels(rej.reason).inc()
        log.info(
            "heartbeat rejected provider=%s seq=%s status=%d: %s",
            body.heartbeat.provider,
            body.heartbeat.seq,
            rej.status,
            rej.detail,
        )
        return _problem(rej.status, rej.detail)
    ctx.metrics.heartbeats_accepted.inc()
    return HeartbeatAccepted(
        provider=to_checksum_address(hb.provider), seq=hb.seq, received_at=received
    )


def _problem(code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code)
