"""Store rows to response models: a job's timeline in words, providers with liveness."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from metascheduler.audit.ledger import Ledger
from metascheduler.audit.model import movement_totals
from metascheduler.billing import from_units
from metascheduler.chain.errors import ErrorDecoder
from metascheduler.chain.events import ChainEvent
from metascheduler.chain.types import JobStatus, ProviderStatus
from metascheduler.store.codec import as_bytes, as_int
from metascheduler.store.models import Event, Job
from metascheduler.store.queries import ProviderLoad

from .schemas import (
    AccountStatement,
    Hardware,
    JobDetail,
    JobSummary,
    Load,
    MovementOut,
    Prices,
    ProviderOut,
    TimelineEntry,
)

log = logging.getLogger(__name__)


def _credits(units: int) -> str:
    return f"{from_units(units)} credits"


def _status_name(value: Any) -> str:
    try:
        return JobStatus(as_int(value)).name
    except ValueError:
        return f"UNKNOWN({value})"


def job_summary(j: Job) -> JobSummary:
    return JobSummary(
        job_id=j.job_id,
        customer=j.customer,
        provider=j.provider,
        status=_status_name(j.status),
        status_code=j.status,
        escrow=j.escrow,
        max_price_per_minute=j.max_price_per_minute,
        price_per_minute=j.price_per_minute,
        cpus=j.cpus,
        gpus=j.gpus,
        mem_mb=j.mem_mb,
        labels=[str(x) for x in j.labels or []],
        requested_at=j.requested_at,
        placed_at=j.placed_at,
        started_at=j.started_at,
        ended_at=j.ended_at,
        paid=j.paid,
        fee=j.fee,
        refunded=j.refunded,
        exit_code=j.exit_code,
        unplaceable_reason=j.unplaceable_reason,
        last_reason=j.last_reason,
    )


def _spec_text(spec: bytes) -> str:
    try:
        return spec.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + spec.hex()


def job_detail(j: Job, events: list[Event]) -> JobDetail:
    return JobDetail(
        **job_summary(j).model_dump(),
        spec=_spec_text(j.spec),
        spec_hash=j.spec_hash,
        time_limit_minutes=j.time_limit_minutes,
        returns=j.returns or 0,
        timeline=[timeline_entry(e) for e in events],
    )


@cache
def _error_decoder() -> ErrorDecoder:
    from metascheduler.chain.artifacts import load_artifact

    return ErrorDecoder([load_artifact("JobMarket").abi])


def _skipped_words(error_hex: Any) -> str:
    try:
        return str(_error_decoder().decode(as_bytes(error_hex)))
    except Exception as exc:  # a missing artifact must not hide the rest of the timeline
        log.warning("cannot decode a BatchItemSkipped error (%s): %s", error_hex, exc)
        return f"error {error_hex}"


def timeline_entry(e: Event) -> TimelineEntry:
    """One event in words, with the state change and the credits it moved."""
    a = e.args
    frm = _status_name(a["from"]) if "from" in a else None
    to = _status_name(a["to"]) if "to" in a else None
    credits: dict[str, int] = {}
    if e.name == "JobRequested":
        to = JobStatus.PENDING.name
        credits["escrowed"] = as_int(a["escrow"])
        detail = (
            f"requested by {a['customer']}: {a['cpus']} CPUs, {a['gpus']} GPUs, "
            f"{a['memMb']} MB; escrow {_credits(as_int(a['escrow']))}, "
            f"max {_credits(as_int(a['maxPricePerMinute']))}/min"
        )
    elif e.name == "JobPlaced":
        detail = f"placed on {a['provider']} at {_credits(as_int(a['pricePerMinute']))}/min"
    elif e.name == "JobStatusChanged":
        detail = {
            JobStatus.SCHEDULED.name: "accepted: queued on the provider's cluster",
            JobStatus.RUNNING.name: "started running: metering began",
        }.get(to or "", f"{frm} -> {to}")
    elif e.name == "JobReturned":
        detail = f"returned by {a['provider']}: {a.get('reason') or 'no reason given'}"
    elif e.name == "JobEnded":
        credits.update(paid=as_int(a["paid"]), fee=as_int(a["fee"]), refunded=as_int(a["refunded"]))
        code = as_int(a["exitCode"])
        detail = (
            f"ended {to}{'' if code == -1 else f' with exit code {code}'}: "
            f"paid {_credits(credits['paid'])}, fee {_credits(credits['fee'])}, "
            f"refunded {_credits(credits['refunded'])}"
        )
    elif e.name == "JobToppedUp":
        credits["topped_up"] = as_int(a["amount"])
        detail = (
            f"topped up by {_credits(credits['topped_up'])}, "
            f"escrow now {_credits(as_int(a['escrow']))}"
        )
    elif e.name == "BatchItemSkipped":
        detail = f"skipped in a batch (item {a.get('index')}): {_skipped_words(a.get('error'))}"
    else:
        detail = e.name
    return TimelineEntry(
        block_number=e.block_number,
        block_time=e.block_time,
        tx_hash=e.tx_hash,
        log_index=e.log_index,
        event=e.name,
        from_status=frm,
        to_status=to,
        credits=credits,
        detail=detail,
    )


def provider_out(pl: ProviderLoad, alive_since: float, running_cpus: int) -> ProviderOut:
    p = pl.provider
    try:
        status = ProviderStatus(p.status).name
    except ValueError:
        status = f"UNKNOWN({p.status})"
    return ProviderOut(
        address=p.address,
        status=status,
        hardware=Hardware(nodes=p.nodes, cpus=p.cpus, gpus=p.gpus, mem_mb=p.mem_mb),
        prices=Prices(cpu=p.cpu_price, gpu=p.gpu_price, gb=p.gb_price),
        labels=[str(x) for x in p.labels or []],
        alive=p.last_heartbeat_at is not None and p.last_heartbeat_at > alive_since,
        last_heartbeat_at=p.last_heartbeat_at,
        last_heartbeat_seq=p.last_heartbeat_seq,
        heartbeat=p.heartbeat,
        load=Load(
            jobs_placed=pl.placed,
            jobs_running=pl.running,
            cpus_in_use=running_cpus,
            cpus_reserved=pl.cpus_used,
            gpus_reserved=pl.gpus_used,
            mem_mb_reserved=pl.mem_mb_used,
        ),
    )


def account_statement_view(address: str, events: list[Event]) -> AccountStatement:
    """The account's movements, replayed by the audit's ledger over the store's events."""
    acct = address.lower()
    ledger = Ledger(follow=frozenset({acct}))
    for e in events:
        ledger.apply(
            ChainEvent(
                e.name,
                e.args,
                "",
                e.block_number,
                e.block_hash,
                e.tx_hash,
                e.log_index,
                e.block_time,
            )
        )
    return AccountStatement(
        account=address,
        balance=ledger.balances.get(acct, 0),
        in_escrow=ledger.escrow_of(acct),
        totals=movement_totals(ledger.movements),
        movements=[
            MovementOut(
                block_number=m.block,
                block_time=m.time,
                tx_hash=m.tx,
                log_index=m.log_index,
                kind=m.kind,
                job_id=m.job_id,
                amount=m.amount,
                balance=m.balance,
            )
            for m in ledger.movements
        ],
    )
