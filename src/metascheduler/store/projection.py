"""Events to the `jobs` and `providers` projections: pure, deterministic, no I/O.

The same events in the same order always give the same rows, so the projection can be rebuilt
at any time (after a reorg, say) from the `events` table alone. A row is a plain dict keyed by
column name; `store.ingest` writes the dicts. Events come in as `EventRecord`s in chain order
(block number, log index) with JSON-form args (see `store.codec`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from metascheduler.chain.types import JobStatus, ProviderStatus
from metascheduler.spec import SpecError, decode_spec
from metascheduler.store.codec import as_bytes, as_int

Row = dict[str, Any]

#: Events that touch a job row, and those that touch a provider row.
JOB_EVENTS = frozenset(
    {"JobRequested", "JobPlaced", "JobStatusChanged", "JobReturned", "JobEnded", "JobToppedUp"}
)
PROVIDER_EVENTS = frozenset({"ProviderRegistered", "ProviderStatusChanged"})


@dataclass(frozen=True)
class EventRecord:
    name: str
    args: dict[str, Any]
    block_number: int
    log_index: int
    block_time: int
    tx_hash: str = ""

    @property
    def order(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)


def event_job_id(name: str, args: dict[str, Any]) -> int | None:
    return as_int(args["jobId"]) if "jobId" in args else None


def event_parties(name: str, args: dict[str, Any]) -> tuple[str | None, str | None]:
    """(customer, provider) an event names, for the events table's indexes."""
    return args.get("customer"), args.get("provider")


def _spec_fields(spec: bytes) -> tuple[list[str], int | None]:
    try:
        parsed = decode_spec(spec)
    except SpecError:
        # A spec the grid cannot read (nested too deep included) is kept raw, wanting no
        # labels: it must not stop the ingestion of every later event.
        return [], None
    return parsed.required_labels, parsed.time_limit_minutes


def new_job(ev: EventRecord) -> Row:
    a = ev.args
    spec = as_bytes(a["spec"])
    labels, time_limit = _spec_fields(spec)
    return {
        "job_id": as_int(a["jobId"]),
        "customer": a["customer"],
        "provider": None,
        "status": int(JobStatus.PENDING),
        "escrow": as_int(a["escrow"]),
        "max_price_per_minute": as_int(a["maxPricePerMinute"]),
        "cpus": as_int(a["cpus"]),
        "gpus": as_int(a["gpus"]),
        "mem_mb": as_int(a["memMb"]),
        "spec": spec,
        "spec_hash": "0x" + keccak(spec).hex(),
        "labels": labels,
        "time_limit_minutes": time_limit,
        "price_per_minute": None,
        "fee_bps": None,
        "requested_at": ev.block_time,
        "placed_at": None,
        "accepted_at": None,
        "started_at": None,
        "ended_at": None,
        "requested_block": ev.block_number,
        "paid": None,
        "fee": None,
        "refunded": None,
        "exit_code": None,
        "last_reason": None,
        "returns": 0,
        "updated_block": ev.block_number,
    }


def apply_job_event(row: Row | None, ev: EventRecord) -> Row | None:
    """The job row after `ev` (a new dict; `row` is not changed). None if there is no job yet
    and `ev` does not create one (a log seen without its request cannot be projected)."""
    if ev.name == "JobRequested":
        return new_job(ev)
    if row is None:
        return None
    a = ev.args
    out = dict(row)
    out["updated_block"] = ev.block_number
    if ev.name == "JobPlaced":
        out.update(
            status=as_int(a["to"]),
            provider=a["provider"],
            price_per_minute=as_int(a["pricePerMinute"]),
            placed_at=ev.block_time,
            accepted_at=None,
            started_at=None,
        )
    elif ev.name == "JobStatusChanged":
        to = JobStatus(as_int(a["to"]))
        out["status"] = int(to)
        if to == JobStatus.SCHEDULED:
            out["accepted_at"] = ev.block_time
        elif to == JobStatus.RUNNING:
            # Metering starts at the backend's start as the contract recorded it.
            out["started_at"] = as_int(a["since"]) if "since" in a else ev.block_time
    elif ev.name == "JobReturned":
        out.update(
            status=as_int(a["to"]),
            provider=None,
            price_per_minute=None,
            placed_at=None,
            accepted_at=None,
            last_reason=a.get("reason") or None,
            returns=int(row.get("returns") or 0) + 1,
        )
    elif ev.name == "JobEnded":
        code = as_int(a["exitCode"])
        out.update(
            status=as_int(a["to"]),
            paid=as_int(a["paid"]),
            fee=as_int(a["fee"]),
            refunded=as_int(a["refunded"]),
            exit_code=None if code == -1 else code,
            ended_at=ev.block_time,
            escrow=0,
        )
    elif ev.name == "JobToppedUp":
        out["escrow"] = as_int(a["escrow"])
    else:
        return row
    return out


def apply_provider_event(row: Row | None, ev: EventRecord) -> Row | None:
    """The provider row after `ev`; heartbeat columns are not the projection's and stay out."""
    a = ev.args
    if ev.name == "ProviderRegistered":
        nodes, cpus, gpus, mem_mb = (as_int(x) for x in a["hardware"])
        cpu_p, gpu_p, gb_p = (as_int(x) for x in a["prices"])
        out: Row = dict(row) if row else {"registered_block": ev.block_number}
        out.update(
            address=a["provider"],
            # Registering anew keeps the admin's standing; a first registration is REGISTERED.
            status=row["status"]
            if row and row["status"] != ProviderStatus.NONE
            else int(ProviderStatus.REGISTERED),
            nodes=nodes,
            cpus=cpus,
            gpus=gpus,
            mem_mb=mem_mb,
            cpu_price=cpu_p,
            gpu_price=gpu_p,
            gb_price=gb_p,
            labels=list(a["labels"]),
            updated_block=ev.block_number,
        )
        return out
    if ev.name == "ProviderStatusChanged":
        if row is None:
            return None
        return {**row, "status": as_int(a["to"]), "updated_block": ev.block_number}
    return row


def project(events: Iterable[EventRecord]) -> tuple[dict[int, Row], dict[str, Row]]:
    """Jobs and providers from scratch: what a rebuild computes."""
    jobs: dict[int, Row] = {}
    providers: dict[str, Row] = {}
    for ev in sorted(events, key=lambda e: e.order):
        if ev.name in JOB_EVENTS:
            jid = as_int(ev.args["jobId"])
            new = apply_job_event(jobs.get(jid), ev)
            if new is not None:
                jobs[jid] = new
        elif ev.name in PROVIDER_EVENTS:
            addr = ev.args["provider"]
            p = apply_provider_event(providers.get(addr), ev)
            if p is not None:
                providers[addr] = p
    return jobs, providers
