"""The audit over a live chain: logs and state only, every state read pinned to one block."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector
from hexbytes import HexBytes

from metascheduler.audit.ledger import Ledger
from metascheduler.audit.logs import JOB_EVENTS, LogReader, deployment_block
from metascheduler.audit.model import AccountAudit, Discrepancy, GridAudit, JobAudit
from metascheduler.audit.results import StoredResults, check_job_results
from metascheduler.audit.rules import History, replay_job
from metascheduler.chain.events import ChainEvent, EventDecoder
from metascheduler.chain.market import Market
from metascheduler.chain.rpc import retrying
from metascheduler.chain.types import ADDRESS_HINT, JobView, is_typed_address
from metascheduler.errors import MetaschedulerError
from metascheduler.results.logchain import Deployment

T = TypeVar("T")
_FAIL_JOBS_ITEMS = "(uint256,uint256)[]"
_FAIL_JOBS = bytes(function_signature_to_4byte_selector(f"failJobs({_FAIL_JOBS_ITEMS})"))


class AuditError(MetaschedulerError):
    """The audit could not run (no such job, no contract); the message says what to check."""

    kind = "not-found"


class _Source:
    """One market's history up to a fixed head block."""

    def __init__(self, market: Market, from_block: int | None):
        self.market = market
        self.reader = LogReader(market.w3, market.address, market.events)
        self.head = self.reader.head()
        self.start = (
            from_block if from_block is not None else deployment_block(market.w3, market.address)
        )
        if not 0 <= self.start <= self.head:
            raise AuditError(
                f"from block {self.start} is not on the chain, whose head is block {self.head}: "
                "give the market's deployment block, or nothing to have it found"
            )
        self._url = str(getattr(market.w3.provider, "endpoint_uri", ""))
        self._oracle_fails: dict[str, dict[int, int] | None] = {}

    def at_head(self, what: str, fn: Any) -> Any:
        return retrying(what, lambda: fn.call(block_identifier=self.head), rpc_url=self._url)

    def at_block(self, what: str, fn: Any, block: int) -> Any:
        return retrying(what, lambda: fn.call(block_identifier=block), rpc_url=self._url)

    def view(self, job_id: int) -> JobView:
        v = self.at_head(f"reading job {job_id}", self.market.contract.functions.getJob(job_id))
        return JobView.from_call(job_id, v)

    def oracle_fail(self, tx_hash: str, job_id: int) -> int | None:
        """The last sign of life that the oracle's failJobs in `tx_hash` gave `job_id` (the job
        is billed up to it), or None if that transaction is not a failJobs."""
        if tx_hash not in self._oracle_fails:
            tx = retrying(
                f"reading transaction {tx_hash}",
                lambda: self.market.w3.eth.get_transaction(HexBytes(tx_hash)),
                rpc_url=self._url,
            )
            data = bytes(HexBytes(tx["input"]))
            items: dict[int, int] | None = None
            if data[:4] == _FAIL_JOBS:
                (decoded,) = abi_decode([_FAIL_JOBS_ITEMS], data[4:])
                # A job listed twice is ended by its first item; the second is skipped.
                items = {}
                for jid, seen in decoded:
                    items.setdefault(int(jid), int(seen))
            self._oracle_fails[tx_hash] = items
        items = self._oracle_fails[tx_hash]
        return None if items is None else items.get(job_id)

    def plain_transfers_in(self) -> int:
        """Credits that reached the market as ERC-20 transfers, deposits included."""
        credit = self.market.credit
        reader = LogReader(self.market.w3, credit.address, EventDecoder(self.market.credit_abi))
        to_market = "0x" + self.market.address[2:].lower().rjust(64, "0")
        logs = reader.fetch(self.start, self.head, [reader.topic("Transfer"), None, to_market])
        return sum(int(ev.args["value"]) for ev in logs)

    def deployment(self) -> Deployment:
        chain_id = retrying(
            "reading the chain id", lambda: self.market.w3.eth.chain_id, rpc_url=self._url
        )
        return Deployment(int(chain_id), self.market.address)

    def history(self, events: Iterable[ChainEvent]) -> History:
        h = History(self.reader.block_time, self.oracle_fail)
        for ev in events:
            h.add(ev)
        return h

    def grid_events(self) -> list[ChainEvent]:
        topics = [[self.reader.topic("FeeChanged"), self.reader.topic("ProviderRegistered")]]
        return self.reader.fetch(self.start, self.head, topics)


def check_results(jobs: Iterable[JobAudit], results: StoredResults, deployment: Deployment) -> int:
    """Checks the stored results of every job whose completion committed a digest, flagging
    those that differ; returns how many were checked."""
    checked = 0
    for a in jobs:
        if a.result_digest is None or a.provider is None:
            continue
        a.results_check = check_job_results(
            results, deployment, a.job_id, a.provider, a.result_digest
        )
        checked += 1
        if not a.results_check.ok:
            last = a.steps[-1] if a.steps else None
            a.flag(
                "results",
                f"the stored results of job {a.job_id} do not match the digest its completion "
                "committed: " + "; ".join(a.results_check.differences),
                last.block if last else None,
                last.tx if last else None,
            )
    return checked


def audit_job(
    market: Market,
    job_id: int,
    *,
    from_block: int | None = None,
    results: StoredResults | None = None,
) -> JobAudit:
    """One job's timeline (block times, credits moved at each step) and its bill checked; with
    `results` (the API's stored ciphertext), its stored results against its committed digest."""
    src = _Source(market, from_block)
    events = src.reader.job_logs(job_id, src.start, src.head)
    if not events:
        raise AuditError(
            f"job {job_id} has no events on market {market.address} in blocks "
            f"{src.start}-{src.head}: check the job id (and --from-block, if given)"
        )
    src.reader.prefetch_times(e.block_number for e in events)
    report = replay_job(job_id, events, src.history(src.grid_events()), src.view(job_id), src.head)
    if results is not None:
        check_results([report], results, src.deployment())
    return report


def audit_all(
    market: Market,
    *,
    from_block: int | None = None,
    progress: Callable[[str], object] | None = None,
    results: StoredResults | None = None,
) -> GridAudit:
    """Every job's bill, every account's balance rebuilt from events, and conservation:
    Credit.balanceOf(market) == balances + live escrows + accrued fees + unswept surplus (credits
    transferred to the market outside `deposit`). With `results` (the API's stored ciphertext),
    every committed result digest checked against the stored objects.

    `progress(message)` is told each step as it begins (a long history takes a while)."""
    say = progress or (lambda _m: None)
    src = _Source(market, from_block)
    credit = market.credit
    say(f"reading the market's logs, blocks {src.start}..{src.head}")
    events = src.reader.fetch(src.start, src.head)
    report = GridAudit(market.address, credit.address, src.head, src.start)
    history = src.history(events)
    ledger = Ledger()
    by_job: dict[int, list[ChainEvent]] = defaultdict(list)
    accounts: set[str] = set()
    for ev in events:
        ledger.apply(ev)
        if ev.name in JOB_EVENTS:
            by_job[int(ev.args["jobId"])].append(ev)
        for key in ("account", "provider", "customer"):
            if key in ev.args:
                accounts.add(str(ev.args[key]).lower())
    report.discrepancies.extend(ledger.problems)
    say(f"reading the times of the blocks of {len(events)} events")
    src.reader.prefetch_times(e.block_number for evs in by_job.values() for e in evs)

    fns = market.contract.functions
    count = int(src.at_head("reading the job count", fns.jobCount()))
    if sorted(by_job) != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(by_job))
        report.discrepancies.append(
            Discrepancy(
                "job-count",
                f"the contract counts {count} jobs but the logs from block {src.start} show "
                f"{len(by_job)}"
                + (f" (no events for jobs {missing[:20]})" if missing else "")
                + ": audit from the deployment block (--from-block)",
                block=src.head,
            )
        )
    live_escrow = 0
    say(f"reading and replaying {len(by_job)} jobs")
    views = market.get_jobs(by_job, block=src.head)  # batched: one round trip per 100 jobs
    for job_id in sorted(by_job):
        view = views.get(job_id) or src.view(job_id)  # a missing one fails in words
        if not view.status.terminal:
            live_escrow += view.escrow
        report.jobs.append(replay_job(job_id, by_job[job_id], history, view, src.head))
    if results is not None:
        say("checking the stored results against their committed digests")
        report.results_checked = check_results(report.jobs, results, src.deployment())

    report.accounts = len(accounts)
    say(f"reading {len(accounts)} balances")
    onchain = market.balances_of(sorted(accounts), block=src.head)  # batched, as jobs are
    for acct in sorted(accounts):
        wrong = _balance_discrepancy(src, ledger, acct, onchain[acct])
        if wrong is not None:
            report.discrepancies.append(wrong)
    report.balances_total = sum(onchain.values())
    report.live_escrow = live_escrow
    report.accrued_fees = int(src.at_head("reading accrued fees", fns.accruedFees()))
    report.token_held = int(
        src.at_head(
            "reading the market's token balance", credit.functions.balanceOf(market.address)
        )
    )
    if report.accrued_fees != ledger.fees:
        report.discrepancies.append(
            Discrepancy(
                "fees",
                f"accruedFees is {report.accrued_fees} units, the events sum to {ledger.fees}",
                block=src.head,
            )
        )
    rebuilt_escrow = sum(ledger.escrows.values())
    if rebuilt_escrow != live_escrow:
        report.discrepancies.append(
            Discrepancy(
                "escrow",
                f"live jobs hold {live_escrow} units of escrow, the events say {rebuilt_escrow}",
                block=src.head,
            )
        )
    # Transfers to the market that were not deposits are a surplus nobody's balance holds,
    # until the admin sweeps it.
    say("reading the credit transfers to the market")
    report.surplus = src.plain_transfers_in() - ledger.deposited - ledger.swept
    accounted = report.balances_total + live_escrow + report.accrued_fees + report.surplus
    if report.token_held != accounted:
        report.discrepancies.append(
            Discrepancy(
                "conservation",
                f"the market holds {report.token_held} credit units, but balances "
                f"({report.balances_total}) + live escrows ({live_escrow}) + accrued fees "
                f"({report.accrued_fees}) + surplus from plain transfers ({report.surplus}) = "
                f"{accounted}: {report.token_held - accounted:+d} units unaccounted for",
                block=src.head,
            )
        )
    return report


def audit_account(market: Market, account: str, *, from_block: int | None = None) -> AccountAudit:
    """One account's statement: every movement of its market balance (deposits, withdrawals,
    escrows and top-ups of its jobs, refunds, payments to it as a provider) rebuilt from the
    events alone, each with its block time, and the sum checked against the contract."""
    if not is_typed_address(account):
        raise AuditError(f"{account!r} is not an address: {ADDRESS_HINT}")
    acct = account.lower()
    src = _Source(market, from_block)
    events = src.reader.fetch(src.start, src.head)
    ledger = Ledger(follow=frozenset({acct}))
    for ev in events:
        ledger.apply(ev)
    src.reader.prefetch_times(m.block for m in ledger.movements)
    report = AccountAudit(_cs(acct), market.address, src.head, src.start)
    report.movements = [replace(m, time=src.reader.block_time(m.block)) for m in ledger.movements]
    report.rebuilt = ledger.balances.get(acct, 0)
    report.in_escrow = ledger.escrow_of(acct)
    report.balance = market.balances_of([acct], block=src.head)[acct]
    report.wallet = int(
        src.at_head(
            f"reading {report.account}'s wallet", market.credit.functions.balanceOf(report.account)
        )
    )
    report.discrepancies = [d for d in ledger.problems if (d.account or "").lower() == acct]
    wrong = _balance_discrepancy(src, ledger, acct, report.balance)
    if wrong is not None:
        report.discrepancies.append(wrong)
    return report


def _balance_discrepancy(
    src: _Source, ledger: Ledger, acct: str, onchain: int
) -> Discrepancy | None:
    """A balance the contract holds that the account's events do not sum to, with the block
    after which it first went wrong (when the node still has that block's state)."""
    rebuilt = ledger.balances.get(acct, 0)
    if onchain == rebuilt:
        return None
    block, jobs = _first_divergence(src, ledger, acct)
    return Discrepancy(
        "balance",
        f"{_cs(acct)} holds {onchain} units in the market, but its events sum to {rebuilt} units"
        + (f"; first wrong after block {block}" if block is not None else "")
        + (f", moved there by job(s) {sorted(jobs)}" if jobs else ""),
        min(jobs) if jobs else None,
        block if block is not None else src.head,
        account=_cs(acct),
    )


def _cs(addr: str) -> str:
    from eth_utils import to_checksum_address

    return str(to_checksum_address(addr))


def _first_divergence(src: _Source, ledger: Ledger, acct: str) -> tuple[int | None, set[int]]:
    """The first block after which the stored balance differs from the rebuilt one (needs the
    node's historical state; None when it has none)."""
    fn: Callable[[], Any] = src.market.contract.functions.balanceOf(_cs(acct))
    try:
        for block, rebuilt in ledger.trail.get(acct, []):
            stored = int(src.at_block(f"reading {acct}'s balance at block {block}", fn, block))
            if stored != rebuilt:
                return block, ledger.touched_by.get((acct, block), set())
    except Exception:  # a pruned node: the discrepancy stands, only its block is unknown
        return None, set()
    return None, set()
