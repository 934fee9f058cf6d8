"""The contract's rules, replayed over one job's events: its timeline and the bill it should get.

Pure: everything the replay needs from the chain (block times, the fee and the provider's prices
in force at a point of history, the last sign of life the oracle's `failJobs` gave) comes in through
a `History`, so the rules can be read, and tested, without a node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import to_checksum_address

from metascheduler import billing
from metascheduler.audit.model import Bill, JobAudit, Step
from metascheduler.chain.events import ChainEvent
from metascheduler.chain.types import JobStatus, JobView, Prices

NO_EXIT_CODE = -1
Position = tuple[int, int]  # (block number, log index): a point in the chain's history


@dataclass
class History:
    """Grid-wide facts a job's bill depends on, in chain order."""

    block_time: Callable[[int], int]
    #: (tx, job) -> the last sign of life that the oracle's failJobs in `tx` gave the job (it is
    #: billed up to it), or None if `tx` is not a failJobs
    oracle_fail: Callable[[str, int], int | None]
    fee_changes: list[tuple[Position, int]] = field(default_factory=list)
    price_changes: dict[str, list[tuple[Position, Prices]]] = field(default_factory=dict)

    def fee_at(self, pos: Position) -> int:
        """The fee in force just before `pos` (the contract starts at 0 bps)."""
        bps = 0
        for at, new in self.fee_changes:
            if at >= pos:
                break
            bps = new
        return bps

    def prices_at(self, provider: str, pos: Position) -> Prices | None:
        found = None
        for at, prices in self.price_changes.get(provider.lower(), []):
            if at >= pos:
                break
            found = prices
        return found

    def add(self, ev: ChainEvent) -> None:
        """Takes in a grid-wide event (FeeChanged, ProviderRegistered); others are ignored."""
        pos = (ev.block_number, ev.log_index)
        if ev.name == "FeeChanged":
            self.fee_changes.append((pos, int(ev.args["newBps"])))
        elif ev.name == "ProviderRegistered":
            cpu, gpu, gb = ev.args["prices"]
            key = str(ev.args["provider"]).lower()
            self.price_changes.setdefault(key, []).append((pos, Prices(cpu, gpu, gb)))


def _c(units: int) -> str:
    return f"{billing.from_units(units)} credits"


def replay_job(
    job_id: int,
    events: Sequence[ChainEvent],
    history: History,
    view: JobView | None = None,
    view_block: int | None = None,
) -> JobAudit:
    """The timeline of `job_id` from its events (in chain order), checked against the rules.

    `view`, the job's stored record at the audit block, is compared with what the events say
    it must be, which catches a record changed without an event; `view_block` is the block
    it was read at."""
    a = JobAudit(job_id)
    status: JobStatus | None = None
    cpus = gpus = mem_mb = 0
    placed_at: Position | None = None
    accepted_at: int | None = None
    for ev in events:
        pos = (ev.block_number, ev.log_index)
        t = history.block_time(ev.block_number)
        args = ev.args
        moved: dict[str, int] = {}
        note = ""
        frm = args.get("from")
        if ev.name != "JobRequested" and status is not None and frm is not None and frm != status:
            a.flag(
                "transition",
                f"{ev.name} says the job left {JobStatus(frm).name}, but its events had it "
                f"{status.name}",
                ev.block_number,
                ev.tx_hash,
            )
        if ev.name == "JobRequested":
            if status is not None:
                a.flag("transition", "requested twice", ev.block_number, ev.tx_hash)
            status = JobStatus.PENDING
            a.customer = to_checksum_address(args["customer"])
            a.escrow_requested = a.escrow = int(args["escrow"])
            a.request_fee = int(args.get("requestFee", 0))
            a.max_price_per_minute = int(args["maxPricePerMinute"])
            cpus, gpus, mem_mb = int(args["cpus"]), int(args["gpus"]), int(args["memMb"])
            moved = {"customer_to_escrow": a.escrow}
            if a.request_fee:
                moved["customer_to_fees"] = a.request_fee
            note = (
                f"requested by {a.customer}: escrow {_c(a.escrow)}, max "
                f"{_c(a.max_price_per_minute)}/min, {cpus} CPU {gpus} GPU {mem_mb} MB"
                + (f", request fee {_c(a.request_fee)}" if a.request_fee else "")
            )
        elif status is None:
            a.flag("transition", f"{ev.name} before the job was requested", ev.block_number)
            continue
        elif ev.name == "JobPlaced":
            status = JobStatus(args["to"])
            a.provider = to_checksum_address(args["provider"])
            a.price_per_minute = int(args["pricePerMinute"])
            placed_at = pos
            a.fee_bps = history.fee_at(pos)
            a.started_at = None
            accepted_at = None
            note = f"placed on {a.provider} at {_c(a.price_per_minute)}/min, fee {a.fee_bps} bps"
            _check_price(a, history, pos, ev, cpus, gpus, mem_mb)
        elif ev.name == "JobStatusChanged":
            status = JobStatus(args["to"])
            if status == JobStatus.SCHEDULED:
                accepted_at = t
            if status == JobStatus.RUNNING:
                a.started_at = _start(a, args, accepted_at, t, ev)
                note = (
                    "started: metering from here"
                    if a.started_at == t
                    else f"started: metering from the backend's start, {t - a.started_at} s earlier"
                )
        elif ev.name == "JobReturned":
            status = JobStatus(args["to"])
            note = f"returned by {to_checksum_address(args['provider'])}: {args['reason']}"
            a.provider = None
            a.price_per_minute = None
            a.fee_bps = None
            placed_at = None
        elif ev.name == "JobToppedUp":
            amount = int(args["amount"])
            a.top_ups += amount
            a.escrow += amount
            moved = {"customer_to_escrow": amount}
            note = f"topped up by {_c(amount)}"
            if int(args["escrow"]) != a.escrow:
                a.flag(
                    "escrow",
                    f"top-up says the escrow is now {_c(int(args['escrow']))}, but the request "
                    f"and top-ups sum to {_c(a.escrow)}",
                    ev.block_number,
                    ev.tx_hash,
                )
        elif ev.name == "JobEnded":
            frm_status = status
            status = JobStatus(args["to"])
            a.ended_at = t
            a.exit_code = int(args["exitCode"])
            digest = bytes(args.get("resultDigest") or bytes(32))
            a.result_digest = "0x" + digest.hex() if any(digest) else None
            paid, fee, refunded = int(args["paid"]), int(args["fee"]), int(args["refunded"])
            a.actual = Bill(paid + fee, fee, paid, refunded)
            moved = {"to_provider": paid, "to_fees": fee, "to_customer": refunded}
            _check_bill(a, frm_status, status, ev, history)
            note = f"ended {status.name}: paid {_c(paid)}, fee {_c(fee)}, refunded {_c(refunded)}"
        a.steps.append(
            Step(
                ev.block_number,
                t,
                ev.tx_hash,
                ev.log_index,
                ev.name,
                JobStatus(frm).name if frm is not None else None,
                status.name,
                0 if status.terminal else a.escrow,
                a.provider,
                a.price_per_minute,
                moved,
                note,
            )
        )
    if status is None:
        a.flag("missing", f"job {job_id} has no JobRequested event: it does not exist", None)
        return a
    a.status = status.name
    if view is not None:
        _check_stored(a, status, view, placed_at, view_block)
    return a


def _check_price(
    a: JobAudit,
    history: History,
    pos: Position,
    ev: ChainEvent,
    cpus: int,
    gpus: int,
    mem_mb: int,
) -> None:
    price = a.price_per_minute or 0
    if price > a.max_price_per_minute:
        a.flag(
            "price",
            f"placed at {_c(price)}/min, above the job's max price "
            f"{_c(a.max_price_per_minute)}/min",
            ev.block_number,
            ev.tx_hash,
        )
    prices = history.prices_at(a.provider or "", pos)
    if prices is None:
        a.flag("price", f"placed on {a.provider}, which never registered", ev.block_number)
        return
    quoted = billing.price_per_minute(cpus, gpus, mem_mb, prices.cpu, prices.gpu, prices.gb)
    if quoted != price:
        a.flag(
            "price",
            f"placed at {_c(price)}/min, but {a.provider}'s registered prices give "
            f"{_c(quoted)}/min",
            ev.block_number,
            ev.tx_hash,
        )


def _start(
    a: JobAudit, args: dict[str, Any], accepted_at: int | None, t: int, ev: ChainEvent
) -> int:
    """Where metering started: the provider's reported start as the contract recorded it
    (`since`), which the contract bounds between the acceptance and the START's block."""
    since = args.get("since")
    if since is None:  # a market from before starts carried the backend's time
        return t
    start = int(since)
    earliest = accepted_at if accepted_at is not None else t
    if not earliest <= start <= t:
        a.flag(
            "start",
            f"metering starts at {start}, outside the acceptance ({earliest}) and the start's "
            f"block ({t}) that bound it",
            ev.block_number,
            ev.tx_hash,
        )
    return start


def _check_bill(
    a: JobAudit, frm: JobStatus | None, to: JobStatus, ev: ChainEvent, history: History
) -> None:
    """The split of a JobEnded against the contract's rules."""
    assert a.actual is not None and a.ended_at is not None
    blk, tx = ev.block_number, ev.tx_hash
    escrow = a.escrow
    ran = frm == JobStatus.RUNNING and a.started_at is not None
    price = a.price_per_minute or 0
    fee_bps = a.fee_bps or 0
    last_seen = (
        history.oracle_fail(tx, a.job_id)
        if to == JobStatus.FAILED and a.exit_code == NO_EXIT_CODE and ran
        else None
    )
    by_oracle = last_seen is not None
    billed_until = a.ended_at
    reported = ev.args.get("billedUntil")
    if last_seen is not None:
        # Billed up to the provider's last sign of life, clamped between the start and the end.
        billed_until = min(max(last_seen, a.started_at or 0), a.ended_at)
    elif ran and to in (JobStatus.FINISHED, JobStatus.FAILED) and reported is not None:
        # The provider's completion: billed up to the backend's end it reported, which the
        # contract bounds between the start and the completion's block.
        billed_until = int(reported)
        if not (a.started_at or 0) <= billed_until <= a.ended_at:
            a.flag(
                "bill",
                f"billed up to {billed_until}, outside the start ({a.started_at}) and the "
                f"completion's block ({a.ended_at}) that bound it",
                blk,
                tx,
            )
    if ran and reported is not None and int(reported) != billed_until:
        a.flag(
            "bill",
            f"billed up to {reported}, but the rules give {billed_until}",
            blk,
            tx,
        )
    if not ran:
        cost = 0
    else:
        assert a.started_at is not None
        cost = billing.cost(price=price, elapsed_s=billed_until - a.started_at, escrow=escrow)
    fee = billing.fee(cost, fee_bps)
    a.expected = Bill(cost, fee, cost - fee, escrow - cost)
    act = a.actual
    total = act.paid + act.fee + act.refunded
    if total != escrow:
        a.flag(
            "split",
            f"paid + fee + refunded = {_c(total)}, but the escrow (request + top-ups) was "
            f"{_c(escrow)}",
            blk,
            tx,
        )
    why = (
        "it never ran"
        if not ran
        else f"the oracle failed it (provider silent): {_c(price)}/min x "
        f"{billed_until - (a.started_at or 0)} s to its last sign of life, capped by the escrow "
        f"{_c(escrow)}"
        if by_oracle
        else f"{_c(price)}/min x {billed_until - (a.started_at or 0)} s, capped by the escrow "
        f"{_c(escrow)}"
    )
    if act.cost != cost:
        a.flag(
            "bill",
            f"billed {_c(act.cost)} (paid {_c(act.paid)} + fee {_c(act.fee)}), but the rules "
            f"give {_c(cost)} ({why})",
            blk,
            tx,
        )
    if act.fee != billing.fee(act.cost, fee_bps):
        a.flag(
            "fee",
            f"fee {_c(act.fee)} on a bill of {_c(act.cost)}; the fee in force at placement "
            f"was {fee_bps} bps, which gives {_c(billing.fee(act.cost, fee_bps))}",
            blk,
            tx,
        )
    if act.refunded != escrow - cost:
        a.flag(
            "refund", f"refunded {_c(act.refunded)}, the rules give {_c(escrow - cost)}", blk, tx
        )
    if to == JobStatus.OUT_OF_CREDITS:
        funded = billing.funded_seconds(escrow=escrow, price=price)
        if not ran or a.ended_at < (a.started_at or 0) + funded:
            a.flag(
                "early-expiry",
                f"ended OUT_OF_CREDITS {a.ended_at - (a.started_at or a.ended_at)} s after start, "
                f"but the escrow {_c(escrow)} at {_c(price)}/min lasts {funded} s",
                blk,
                tx,
            )
    _check_exit_code(a, to, by_oracle, blk, tx)


def _check_exit_code(a: JobAudit, to: JobStatus, by_oracle: bool, blk: int, tx: str) -> None:
    code = a.exit_code
    bad = (
        (to == JobStatus.FINISHED and code != 0)
        or (to == JobStatus.FAILED and code == 0)
        or (to in (JobStatus.CANCELLED, JobStatus.OUT_OF_CREDITS) and code != NO_EXIT_CODE)
    )
    if bad:
        a.flag("exit-code", f"ended {to.name} with exit code {code}", blk, tx)


def _check_stored(
    a: JobAudit, status: JobStatus, view: JobView, placed_at: Position | None, block: int | None
) -> None:
    """The stored record at the audit block against what the events say it must hold."""
    found: list[str] = []
    if view.status != status:
        found.append(f"status {view.status.name} (events: {status.name})")
    if not status.terminal:
        if view.escrow != a.escrow:
            found.append(f"escrow {_c(view.escrow)} (events: {_c(a.escrow)})")
        if view.customer.lower() != (a.customer or "").lower():
            found.append(f"customer {view.customer} (events: {a.customer})")
    if placed_at is not None:
        if view.price_per_minute != a.price_per_minute:
            found.append(
                f"price {_c(view.price_per_minute)}/min "
                f"(placed at {_c(a.price_per_minute or 0)}/min)"
            )
        if view.fee_bps != a.fee_bps:
            found.append(f"fee {view.fee_bps} bps (fee at placement: {a.fee_bps} bps)")
        if view.provider.lower() != (a.provider or "").lower():
            found.append(f"provider {view.provider} (placed on {a.provider})")
    if found:
        last = a.steps[-1].block if a.steps else None
        a.flag(
            "stored-state",
            "the contract's record disagrees with the job's events: "
            + "; ".join(found)
            + f" (read at block {block}; changed without an event after block {last})",
            block,
        )
