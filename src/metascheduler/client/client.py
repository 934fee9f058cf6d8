"""`Client`: one wallet's view of one market: credits, jobs and provider records.

Every request is checked before it is sent: a balance that falls short raises
`InsufficientCredits` saying how much is missing, and any other revert is caught by the gas
estimate and raised as `RevertError` in words, so no transaction bound to fail is sent.
The SDK never prints; the CLI does.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3

from metascheduler import billing
from metascheduler.audit.audit import AuditError, audit_job
from metascheduler.audit.logs import LogReader, address_topic, deployment_block, id_topic
from metascheduler.audit.model import Step
from metascheduler.chain.errors import RevertError
from metascheduler.chain.events import ChainEvent
from metascheduler.chain.market import Market
from metascheduler.chain.rpc import connect, retrying
from metascheduler.chain.types import (
    ADDRESS_HINT,
    ZERO_ADDRESS,
    Hardware,
    JobStatus,
    JobView,
    Prices,
    is_typed_address,
)
from metascheduler.client.errors import ClientError, InsufficientCredits, NotFound, WatchTimeout
from metascheduler.client.models import Balance, Deposit, JobInfo, ProviderInfo
from metascheduler.client.results import LogStream, Outputs, fetch_outputs
from metascheduler.keys import DEVNET_CHAIN_IDS
from metascheduler.results.http import ResultsApi
from metascheduler.results.logchain import Deployment
from metascheduler.spec import JobSpec, encode_spec, load_spec

UINT40_MAX = 2**40 - 1
UINT96_MAX = 2**96 - 1
PERMIT_DEADLINE_S = 3600


class Client:
    """A market seen by one account (read-only when `market` has no account)."""

    def __init__(
        self, market: Market, *, from_block: int | None = None, api_url: str | None = None
    ):
        self.market = market
        #: The grid's API, for results (logs and outputs); None: those calls refuse in words.
        self.api_url = api_url
        self.w3 = market.w3
        self.reader = LogReader(market.w3, market.address, market.events)
        self._from_block = from_block

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        market_address: str,
        account: LocalAccount | None = None,
        *,
        from_block: int | None = None,
        connect_deadline_s: float = 3.0,
        api_url: str | None = None,
    ) -> Client:
        """Connects, and fails fast (RpcUnavailable) if the node does not answer, or
        (NotFound) if no contract lives at `market_address`."""
        if not is_typed_address(market_address):
            raise ClientError(
                f"{market_address!r} is not an address: give the market's 0x... address "
                "(--market or MS_MARKET_ADDRESS)"
            )
        w3 = connect(rpc_url)
        code = retrying(
            "connecting to the chain",
            lambda: w3.eth.get_code(Web3.to_checksum_address(market_address)),
            deadline_s=connect_deadline_s,
            rpc_url=rpc_url,
        )
        if not code:
            raise NotFound(
                f"no contract at {market_address} on the chain at {rpc_url}: check --market "
                "(MS_MARKET_ADDRESS) and --rpc-url"
            )
        if from_block is not None:
            head = int(retrying("reading the block number", lambda: w3.eth.block_number))
            if not 0 <= from_block <= head:
                raise ClientError(
                    f"from block {from_block} is not on the chain, whose head is block {head}: "
                    "give the market's deployment block (--from-block, MS_FROM_BLOCK), or "
                    "nothing to have it found"
                )
        return cls(Market(w3, market_address, account), from_block=from_block, api_url=api_url)

    # ------------------------------------------------------------------ basics

    @property
    def address(self) -> str:
        if self.market.sender is None:
            raise ClientError(
                "this needs a wallet: give --keystore (with its password) or --key-env"
            )
        return self.market.sender.address

    @property
    def from_block(self) -> int:
        """Where the market's history starts (found by bisection unless given)."""
        if self._from_block is None:
            self._from_block = deployment_block(self.w3, self.market.address)
        return self._from_block

    def chain_id(self) -> int:
        return int(retrying("reading the chain id", lambda: self.w3.eth.chain_id))

    def _head(self) -> tuple[int, int]:
        block = retrying("reading the latest block", lambda: self.w3.eth.get_block("latest"))
        return int(block["number"]), int(block["timestamp"])

    # ------------------------------------------------------------------ credits

    def balance(self, account: str | None = None) -> Balance:
        acct = _address(account or self.address)
        gas = retrying("reading the gas balance", lambda: self.w3.eth.get_balance(acct))
        return Balance(
            acct, self.market.wallet_balance(acct), self.market.balance_of(acct), int(gas)
        )

    def _need_market(self, what: str, amount: int) -> None:
        have = self.market.balance_of(self.address)
        if have < amount:
            wallet = self.market.wallet_balance(self.address)
            missing = amount - have
            if wallet >= missing:
                hint = (
                    f"Deposit them: `metascheduler credits deposit {billing.from_units(missing)}` "
                    f"(your wallet holds {billing.from_units(wallet)})."
                )
            else:
                hint = (
                    f"Your wallet holds only {billing.from_units(wallet)}: get credits into it "
                    "first (on a devnet: `metascheduler credits faucet`), then deposit."
                )
            raise InsufficientCredits(what, "market", have, amount, hint)

    def deposit(self, amount: int) -> Deposit:
        """Moves `amount` units from the wallet into the market: with an EIP-2612 permit (one
        transaction) where the token takes one, else approve + deposit."""
        _positive("the deposit", amount)
        me = self.address
        wallet = self.market.wallet_balance(me)
        if wallet < amount:
            hint = (
                "On a devnet: `metascheduler credits faucet`."
                if self.chain_id() in DEVNET_CHAIN_IDS
                else "Buy or receive credit tokens into this wallet first."
            )
            raise InsufficientCredits("the deposit", "wallet", wallet, amount, hint)
        allowance = int(
            self.market._call(
                "reading the allowance",
                self.market.credit.functions.allowance(me, self.market.address),
            )
        )
        if allowance >= amount:
            r = self.market.deposit(amount)
            return Deposit(amount, "deposit", [_hex(r)])
        try:
            deadline = self._head()[1] + PERMIT_DEADLINE_S
            r = self.market.deposit_with_permit(amount, deadline)
            return Deposit(amount, "permit", [_hex(r)])
        except RevertError:
            # The token takes no permit (or refused ours): the estimate caught it, nothing was
            # sent; approve, then deposit.
            pass
        r1 = self.market.approve(amount)
        r2 = self.market.deposit(amount)
        return Deposit(amount, "approve+deposit", [_hex(r1), _hex(r2)])

    def withdraw(self, amount: int) -> int:
        _positive("the withdrawal", amount)
        self._need_market("the withdrawal", amount)
        self.market.withdraw(amount)
        return amount

    def faucet(self) -> int:
        """Devnets only (chain ids 31337, 1337): mints credits into the wallet; returns how many."""
        cid = self.chain_id()
        if cid not in DEVNET_CHAIN_IDS:
            raise ClientError(
                f"the faucet works on local devnets only (chain ids 31337, 1337); this chain is "
                f"{cid}: get credits from whoever issues them"
            )
        before = self.market.wallet_balance(self.address)
        self.market.faucet()
        return self.market.wallet_balance(self.address) - before

    # ------------------------------------------------------------------ jobs

    def submit(self, spec: JobSpec | str | Path, *, escrow: int, max_price: int) -> int:
        """Requests a job; returns its id. `escrow` (units) is locked from the market balance;
        `max_price` is the most paid per minute (units). The spec is validated (SpecError) and
        the balance checked (InsufficientCredits) before anything is sent."""
        job_spec = spec if isinstance(spec, JobSpec) else load_spec(spec)
        data = encode_spec(job_spec)
        _positive("the escrow", escrow, UINT96_MAX)
        _positive("the max price per minute", max_price, UINT40_MAX)
        self._need_market("the job's escrow", escrow)
        return self.market.request_job(
            data,
            job_spec.cpus,
            job_spec.gpus,
            job_spec.mem_mb,
            max_price_per_minute=max_price,
            escrow=escrow,
        )

    def cancel(self, job_id: int) -> JobInfo:
        """Cancels a live job: billed its running time only, the rest refunded. Returns the
        ended job."""
        self.market.cancel_job(job_id)
        return self.status(job_id)

    def top_up(self, job_id: int, amount: int) -> int:
        """Adds `amount` units to a live job's escrow; returns the new escrow."""
        _positive("the top-up", amount)
        view = self._view(job_id)
        if view.status.terminal:
            raise ClientError(
                f"job {job_id} already ended {view.status.name}: only a live job can be topped up"
            )
        self._need_market(f"topping up job {job_id}", amount)
        r = self.market.top_up(job_id, amount)
        for ev in self.market.decode_events(r):
            if ev.name == "JobToppedUp":
                return int(ev.args["escrow"])
        raise ClientError(f"topping up job {job_id}: mined, but no JobToppedUp event")

    def _view(self, job_id: int, block: int | None = None) -> JobView:
        try:
            return self.market.get_job(job_id, block=block)
        except RevertError as exc:
            if exc.name == "JobNotFound":
                raise NotFound(str(exc)) from None
            raise

    def status(self, job_id: int) -> JobInfo:
        """The job now, with the credits it has spent so far (on chain time)."""
        block, now = self._head()
        # The record at that block, as the events and the time: a job ending a block later
        # would otherwise read FINISHED without its JobEnded event (no exit code, no bill).
        view = self._view(job_id, block)
        if not view.status.terminal:
            return _live_info(view, block, now)
        events = self.reader.job_logs(job_id, self.from_block, block)
        return _ended_info(view, events, block, now)

    def list(
        self,
        *,
        mine: bool = True,
        statuses: Sequence[JobStatus] | None = None,
        states: Sequence[JobStatus] | None = None,
    ) -> builtins.list[JobInfo]:
        """Jobs requested by this wallet (or everyone's with mine=False), by id, optionally only
        those in `statuses` (`states` is its earlier name, kept)."""
        statuses = statuses or states
        block, now = self._head()
        topics: builtins.list[Any] = [self.reader.topic("JobRequested"), None]
        if mine:
            topics.append(address_topic(self.address))
        requested = self.reader.fetch(self.from_block, block, topics)
        ids = [int(e.args["jobId"]) for e in requested]
        views = self._views(ids, block)
        ended_ids = [v.job_id for v in views if v.status.terminal]
        by_job: dict[int, builtins.list[ChainEvent]] = {e.args["jobId"]: [e] for e in requested}
        if ended_ids:
            names = [self.reader.topic("JobEnded"), self.reader.topic("JobToppedUp")]
            for i in range(0, len(ended_ids), 500):
                part = [id_topic(j) for j in ended_ids[i : i + 500]]
                for ev in self.reader.fetch(self.from_block, block, [names, part]):
                    by_job[int(ev.args["jobId"])].append(ev)
        out = []
        for v in views:
            if statuses and v.status not in statuses:
                continue
            out.append(
                _ended_info(v, by_job[v.job_id], block, now)
                if v.status.terminal
                else _live_info(v, block, now)
            )
        return out

    def _views(self, ids: builtins.list[int], block: int) -> builtins.list[JobView]:
        """getJob for many ids at `block`, in JSON-RPC batches where the node allows."""
        views = self.market.get_jobs(ids, block=block)
        return [views[j] for j in ids if j in views]

    def watch(
        self, job_id: int, *, poll_s: float = 1.0, timeout_s: float | None = None
    ) -> Iterator[JobInfo]:
        """Yields the job whenever its state, escrow or spending changes (the first read at once),
        until a terminal state, which is yielded last. WatchTimeout after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last: tuple[Any, ...] | None = None
        while True:
            info = self.status(job_id)
            key = (info.status, info.escrow, info.spent, info.provider)
            if key != last:
                last = key
                yield info
            if info.terminal:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise WatchTimeout(
                    f"job {job_id} is still {info.status.name} after {timeout_s:.0f} s of watching"
                )
            time.sleep(poll_s)

    def history(self, job_id: int) -> builtins.list[Step]:
        """The job's timeline from its events: block, block time, state change, credits moved."""
        try:
            return audit_job(self.market, job_id, from_block=self.from_block).steps
        except AuditError as exc:
            raise NotFound(str(exc)) from None

    # ------------------------------------------------------------------ results

    def _results(self) -> tuple[ResultsApi, LocalAccount, Deployment]:
        if not self.api_url:
            raise ClientError(
                "results come through the grid's API: give its address (--api-url or MS_API_URL)"
            )
        account = self.market.sender.account if self.market.sender else None
        if account is None:
            raise ClientError(
                "results are encrypted to the customer's wallet: give --keystore or --key-env"
            )
        return ResultsApi(self.api_url), account, Deployment(self.chain_id(), self.market.address)

    def logs(
        self, job_id: int, *, follow: bool = False, timeout_s: float | None = None
    ) -> LogStream:
        """The job's log records, checked and decrypted with this wallet (its customer's). With
        `follow`, the iteration goes on while the job runs and ends with it; afterwards the
        stream's `exit_code` is the job's (from the provider's final chunk)."""
        api, account, dep = self._results()
        self._view(job_id)
        return LogStream(
            api,
            account,
            dep,
            job_id,
            lambda: self._view(job_id),
            follow=follow,
            timeout_s=timeout_s,
        )

    def outputs(self, job_id: int, dest: Path) -> Outputs:
        """Downloads the job's outputs, checks them against the digest committed on chain (when
        the contract records one), decrypts them and unpacks them into `dest`, refusing any path
        that would land outside it."""
        api, account, dep = self._results()
        return fetch_outputs(
            api, account, dep, job_id, lambda: self._view(job_id), self.result_digest(job_id), dest
        )

    def result_digest(self, job_id: int) -> str | None:
        """The `resultDigest` of the job's `JobEnded` event, when the contract emits one."""
        block, _ = self._head()
        for ev in self.reader.job_logs(job_id, self.from_block, block):
            if ev.name == "JobEnded" and "resultDigest" in ev.args:
                value = ev.args["resultDigest"]
                raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
                # Zero: ended without one (cancelled, out of credits, or no results shipped).
                return "0x" + raw.hex() if any(raw) else None
        return None

    # ------------------------------------------------------------------ providers

    def register_provider(self, hardware: Hardware, prices: Prices, labels: Sequence[str]) -> str:
        """Registers (or updates) this wallet as a provider; the admin must then approve it."""
        r = self.market.register_provider(hardware, prices, labels)
        return _hex(r)

    def provider(self, address: str | None = None) -> ProviderInfo:
        addr = _address(address or self.address)
        status, hw, prices = self.market.get_provider(addr)
        labels: builtins.list[str] = []
        if status.value != 0:
            topics = [self.reader.topic("ProviderRegistered"), address_topic(addr)]
            regs = self.reader.fetch(self.from_block, self._head()[0], topics)
            if regs:
                labels = list(regs[-1].args["labels"])
        return ProviderInfo(addr, status.name, hw, prices, labels, self.market.balance_of(addr))


# ---------------------------------------------------------------------- helpers


def _address(text: str) -> ChecksumAddress:
    """A caller's address, checksummed; ClientError in words when it is not one."""
    if not is_typed_address(text):
        raise ClientError(f"{text!r} is not an address: {ADDRESS_HINT}")
    return Web3.to_checksum_address(text)


def _positive(what: str, amount: int, limit: int | None = None) -> None:
    if amount <= 0:
        raise ClientError(f"{what} must be above zero (got {billing.from_units(amount)} credits)")
    if limit is not None and amount > limit:
        raise ClientError(
            f"{what} of {billing.from_units(amount)} credits is above the contract's limit of "
            f"{billing.from_units(limit)}"
        )


def _hex(receipt: Any) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


def _live_info(v: JobView, block: int, now: int) -> JobInfo:
    placed = v.provider != ZERO_ADDRESS and v.status != JobStatus.PENDING
    spent = 0
    until = None
    if v.status == JobStatus.RUNNING:
        spent = billing.cost(price=v.price_per_minute, elapsed_s=now - v.since, escrow=v.escrow)
        until = v.since + billing.funded_seconds(escrow=v.escrow, price=v.price_per_minute)
    return JobInfo(
        v.job_id,
        v.status,
        v.customer,
        v.provider if placed else None,
        v.escrow,
        v.price_per_minute if placed else None,
        v.fee_bps,
        v.since,
        now,
        block,
        spent,
        until,
    )


def _ended_info(v: JobView, events: Sequence[ChainEvent], block: int, now: int) -> JobInfo:
    """An ended job: its record keeps no customer or escrow, its events do."""
    customer, escrow = ZERO_ADDRESS, 0
    paid = fee = refunded = 0
    exit_code = None
    for ev in events:
        if ev.name == "JobRequested":
            customer = Web3.to_checksum_address(ev.args["customer"])
            escrow = int(ev.args["escrow"])
        elif ev.name == "JobToppedUp":
            escrow = int(ev.args["escrow"])
        elif ev.name == "JobEnded":
            paid, fee = int(ev.args["paid"]), int(ev.args["fee"])
            refunded, exit_code = int(ev.args["refunded"]), int(ev.args["exitCode"])
    placed = v.provider != ZERO_ADDRESS
    return JobInfo(
        v.job_id,
        v.status,
        customer,
        v.provider if placed else None,
        escrow,
        v.price_per_minute if placed else None,
        v.fee_bps,
        v.since,
        now,
        block,
        paid + fee,
        None,
        exit_code,
        paid,
        fee,
        refunded,
    )
