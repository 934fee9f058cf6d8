"""The JobMarket and Credit contracts, bound for Python: every call the parts of the grid make."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ABIFunction
from eth_utils import function_abi_to_4byte_selector
from eth_utils.abi import get_abi_output_types
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import BlockIdentifier, TxReceipt

from metascheduler.chain.artifacts import load_artifact
from metascheduler.chain.errors import ChainError, ErrorDecoder, RevertError
from metascheduler.chain.events import ChainEvent, EventDecoder
from metascheduler.chain.rawlogs import checksum
from metascheduler.chain.rpc import raw_batch, retrying
from metascheduler.chain.sender import Pending, TxSender
from metascheduler.chain.types import (
    Hardware,
    JobView,
    Prices,
    ProviderAction,
    ProviderStatus,
    Terms,
)

# Gas per item of the batch entry points, measured with margin (scripts/bench_gas.py), so a batch
# needs no eth_estimateGas round trip: the base covers the transaction and the first cold reads.
BATCH_GAS_BASE = 80_000
STEP_GAS_PER_ITEM = 45_000
KEEP_GAS_PER_ITEM = 45_000

# placeJobs gas, exact rather than a round bound: blocks are packed by gas *limit*, so a limit
# 20% above use leaves a sixth of every block empty. Measured on anvil (receipts of batches of
# 1 to 400 items; tests/integration/test_oracle.py checks the bound against real receipts):
# execution = 7,012 + 12,490 per item + 4,000 per provider after the first (its record and its
# number are cold once per transaction) + ~0.44 n^2 (memory: each item's abi.encode and event
# data stay allocated). Every branch of `_place` that skips an item costs less than a placement.
# The constants below round each term up; calldata is priced from the bytes themselves.
#: getJob calls per JSON-RPC batch: large enough to matter, small enough for any node's limits.
JOBS_PER_BATCH = 100
TX_BASE_GAS = 21_000
PLACE_EXEC_BASE = 7_100
PLACE_EXEC_PER_ITEM = 12_500
PLACE_EXEC_PER_PROVIDER = 4_200
#: Calldata of one placement is 8 ABI words; at most this many bytes of them are non-zero in
#: practice (job id, address, spec hash, small resource numbers and prices): used to size
#: batches ahead.
PLACE_ITEM_CALLDATA_GAS = 68 * 16 + (8 * 32 - 68) * 4
#: The result digest of a completion that commits to no results.
NO_DIGEST = bytes(32)


def calldata_gas(data: bytes) -> int:
    """Intrinsic gas of calldata: 4 per zero byte, 16 per other byte."""
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


def place_jobs_exec_gas(n_items: int, n_providers: int) -> int:
    """Execution gas bound of a placeJobs of `n_items` to `n_providers` distinct providers."""
    return (
        PLACE_EXEC_BASE
        + PLACE_EXEC_PER_ITEM * n_items
        + PLACE_EXEC_PER_PROVIDER * max(0, n_providers - 1)
        + (n_items * n_items + 1) // 2
    )


def place_jobs_gas(data: bytes, n_items: int, n_providers: int) -> int:
    """Gas limit of one placeJobs transaction with calldata `data`: its exact intrinsic cost plus
    the execution bound. No eth_estimateGas round trip, and no 20% of a block wasted."""
    return TX_BASE_GAS + calldata_gas(data) + place_jobs_exec_gas(n_items, n_providers)


#: A placement: (job id, provider, terms) or (job id, provider, terms, quoted price or None).
PlacementItem = tuple[int, str, Terms] | tuple[int, str, Terms, int | None]
#: A provider step: (job id, action, exit code) or (job id, action, exit code, result digest).
StepItem = tuple[int, ProviderAction, int] | tuple[int, ProviderAction, int, bytes]


def _placement_tuple(p: PlacementItem) -> tuple[int, str, tuple[Any, ...], int]:
    jid, provider, terms = p[0], p[1], p[2]
    quoted = p[3] if len(p) > 3 else None
    return (
        jid,
        provider,
        terms.as_tuple(),
        terms.max_price_per_minute if quoted is None else quoted,
    )


def _digest(value: bytes, job_id: int) -> bytes:
    if len(value) != 32:
        raise ValueError(
            f"job {job_id}: a result digest is 32 bytes (a keccak256 or sha256 hash), "
            f"not {len(value)}"
        )
    return bytes(value)


@cache
def _function_abi(name: str) -> tuple[str, list[str]]:
    """A JobMarket function's selector (0x hex) and output types, from the compiled ABI."""
    for it in load_artifact("JobMarket").abi:
        if it.get("type") == "function" and it.get("name") == name:
            fn = cast(ABIFunction, it)
            return "0x" + function_abi_to_4byte_selector(fn).hex(), get_abi_output_types(fn)
    raise KeyError(f"JobMarket has no function {name}: rebuild the artifacts")


@dataclass(frozen=True)
class Deployment:
    market: str
    credit: str
    block: int


class Market:
    """A connection to one deployment, as one account (or read-only with `account=None`)."""

    def __init__(
        self, w3: Web3, address: str, account: LocalAccount | None = None, **sender_opts: Any
    ):
        self.w3 = w3
        market_art = load_artifact("JobMarket")
        credit_art = load_artifact("Credit")
        self.contract: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=market_art.abi
        )
        self.decoder = ErrorDecoder([market_art.abi, credit_art.abi])
        self.events = EventDecoder(market_art.abi)
        self.address = self.contract.address
        self._credit: Contract | None = None
        self.credit_abi = credit_art.abi
        self.sender = TxSender(w3, account, self.decoder, **sender_opts) if account else None
        self._url = str(getattr(w3.provider, "endpoint_uri", ""))

    # ------------------------------------------------------------------ helpers

    @property
    def credit(self) -> Contract:
        if self._credit is None:
            addr = self._call("reading the credit token", self.contract.functions.credit())
            self._credit = self.w3.eth.contract(address=addr, abi=self.credit_abi)
        return self._credit

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return retrying(what, fn.call, rpc_url=self._url)
        except ContractLogicError as exc:
            raise self._revert_error(exc, what) from None

    def _revert_error(self, exc: ContractLogicError, what: str) -> RevertError:
        data = exc.data if isinstance(exc.data, str) else ""
        return self.decoder.decode(bytes.fromhex(data[2:]) if data else b"", what)

    def _tx(
        self,
        what: str,
        fn_name: str,
        *args: Any,
        gas: int | None = None,
        contract: Contract | None = None,
    ) -> TxReceipt:
        return self.sender_or_fail().wait(
            self._send(what, fn_name, *args, gas=gas, contract=contract)
        )

    def _send(
        self,
        what: str,
        fn_name: str,
        *args: Any,
        gas: int | None = None,
        contract: Contract | None = None,
    ) -> Pending:
        c = contract or self.contract
        data = c.encode_abi(fn_name, args=list(args))
        return self.sender_or_fail().send(c.address, data, what, gas=gas)

    def sender_or_fail(self) -> TxSender:
        if self.sender is None:
            raise RuntimeError("this Market has no account: pass one to send transactions")
        return self.sender

    def decode_events(self, receipt: TxReceipt) -> list[ChainEvent]:
        out = []
        for log in receipt["logs"]:
            if log["address"].lower() == self.address.lower():
                ev = self.events.decode(log)
                if ev is not None:
                    out.append(ev)
        return out

    def skipped(self, receipt: TxReceipt) -> list[tuple[int, int, str]]:
        """Batch items the contract skipped: (index, job id, the error in words)."""
        out = []
        for ev in self.decode_events(receipt):
            if ev.name == "BatchItemSkipped":
                err = self.decoder.decode(ev.args["error"])
                out.append((ev.args["index"], ev.args["jobId"], str(err)))
        return out

    # ------------------------------------------------------------------ deploy

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        deployer: LocalAccount,
        *,
        oracle: str,
        accept_timeout_s: int = 120,
        start_timeout_s: int = 3600,
        admin: str | None = None,
    ) -> Deployment:
        """Deploys a Credit token and a JobMarket; the deployer is the admin unless told."""
        admin = admin or deployer.address
        credit_art = load_artifact("Credit")
        market_art = load_artifact("JobMarket")
        sender = TxSender(w3, deployer, ErrorDecoder([credit_art.abi, market_art.abi]))
        credit_c = w3.eth.contract(abi=credit_art.abi, bytecode=credit_art.bytecode)
        r = sender.transact(
            None,
            credit_c.constructor(admin).data_in_transaction,
            "deploying Credit",
            gas=3_000_000,
        )
        credit_addr = str(r["contractAddress"])
        market_c = w3.eth.contract(abi=market_art.abi, bytecode=market_art.bytecode)
        data = market_c.constructor(
            credit_addr, admin, oracle, accept_timeout_s, start_timeout_s
        ).data_in_transaction
        r = sender.transact(None, data, "deploying JobMarket", gas=7_000_000)
        return Deployment(str(r["contractAddress"]), credit_addr, int(r["blockNumber"]))

    # ------------------------------------------------------------------ credits

    def mint(self, to: str, amount: int) -> TxReceipt:
        return self._tx(f"minting {amount} units to {to}", "mint", to, amount, contract=self.credit)

    def faucet(self) -> TxReceipt:
        return self._tx("drawing from the devnet faucet", "faucet", contract=self.credit)

    def approve(self, amount: int) -> TxReceipt:
        return self._tx(
            "approving the market", "approve", self.address, amount, contract=self.credit
        )

    def deposit(self, amount: int) -> TxReceipt:
        return self._tx(f"depositing {amount} units", "deposit", amount)

    def deposit_with_permit(self, amount: int, deadline: int) -> TxReceipt:
        """Signs an EIP-2612 permit with our key and deposits in one transaction."""
        assert self.sender is not None
        owner = self.sender.address
        nonce = self._call("reading the permit nonce", self.credit.functions.nonces(owner))
        name = self._call("reading the token name", self.credit.functions.name())
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": {
                "name": name,
                "version": "1",
                "chainId": self.sender.chain_id,
                "verifyingContract": self.credit.address,
            },
            "message": {
                "owner": owner,
                "spender": self.address,
                "value": amount,
                "nonce": nonce,
                "deadline": deadline,
            },
        }
        signed = Account.sign_typed_data(self.sender.account.key, full_message=typed)
        return self._tx(
            f"depositing {amount} units with a permit",
            "depositWithPermit",
            amount,
            deadline,
            signed.v,
            signed.r.to_bytes(32, "big"),
            signed.s.to_bytes(32, "big"),
        )

    def withdraw(self, amount: int) -> TxReceipt:
        return self._tx(f"withdrawing {amount} units", "withdraw", amount)

    def balance_of(self, account: str) -> int:
        return int(
            self._call("reading a market balance", self.contract.functions.balanceOf(account))
        )

    def balances_of(self, accounts: Iterable[str], *, block: int | None = None) -> dict[str, int]:
        """Each account's market balance (at the latest block, or at `block`), keyed as given,
        read as raw `eth_call`s in JSON-RPC batches of `JOBS_PER_BATCH`: an audit of a grid
        with thousands of wallets reads them all. A batch that the endpoint refuses, or with a
        failed item, is read again one account at a time, so that an error (ChainError) names
        the account and the block."""
        at: BlockIdentifier = "latest" if block is None else block
        tag = "latest" if block is None else hex(block)
        accts = list(dict.fromkeys(accounts))
        selector = _function_abi("balanceOf")[0]
        out: dict[str, int] = {}
        for i in range(0, len(accts), JOBS_PER_BATCH):
            part = accts[i : i + JOBS_PER_BATCH]
            calls = [
                (
                    "eth_call",
                    [{"to": self.address, "data": selector + a[2:].lower().zfill(64)}, tag],
                )
                for a in part
            ]
            results = self._retrying(
                f"reading {len(part)} balances", partial(raw_batch, self.w3, calls)
            )
            if results is None:
                for a in part:
                    what = f"reading {a}'s balance at block {'latest' if block is None else block}"
                    fn = self.contract.functions.balanceOf(checksum(a))
                    try:
                        out[a] = int(self._retrying(what, partial(fn.call, block_identifier=at)))
                    except Web3RPCError as exc:
                        raise ChainError(f"{what}: the node refused: {exc}") from exc
                continue
            out.update((a, int(r, 16)) for a, r in zip(part, results, strict=True))
        return out

    def wallet_balance(self, account: str) -> int:
        return int(self._call("reading a wallet balance", self.credit.functions.balanceOf(account)))

    def accrued_fees(self) -> int:
        return int(self._call("reading accrued fees", self.contract.functions.accruedFees()))

    # ------------------------------------------------------------------ providers

    def register_provider(self, hw: Hardware, prices: Prices, labels: Sequence[str]) -> TxReceipt:
        return self._tx(
            "registering the provider",
            "registerProvider",
            (hw.nodes, hw.cpus, hw.gpus, hw.mem_mb),
            (prices.cpu, prices.gpu, prices.gb),
            list(labels),
        )

    def approve_provider(self, provider: str) -> TxReceipt:
        return self._tx(f"approving provider {provider}", "approveProvider", provider)

    def ban_provider(self, provider: str) -> TxReceipt:
        return self._tx(f"banning provider {provider}", "banProvider", provider)

    def get_provider(self, provider: str) -> tuple[ProviderStatus, Hardware, Prices]:
        status, hw, pr = self._call(
            f"reading provider {provider}", self.contract.functions.getProvider(provider)
        )
        return ProviderStatus(status), Hardware(*hw), Prices(*pr)

    def set_fee(self, bps: int) -> TxReceipt:
        return self._tx(f"setting the fee to {bps} bps", "setFee", bps)

    def set_timeouts(self, accept_s: int, start_s: int) -> TxReceipt:
        return self._tx("setting timeouts", "setTimeouts", accept_s, start_s)

    def set_request_fee(self, fee: int) -> TxReceipt:
        return self._tx(f"setting the request fee to {fee} units", "setRequestFee", fee)

    def sweep_surplus(self, to: str) -> TxReceipt:
        return self._tx(f"sweeping the market's surplus to {to}", "sweepSurplus", to)

    def pause(self) -> TxReceipt:
        return self._tx("pausing requests", "pause")

    def unpause(self) -> TxReceipt:
        return self._tx("unpausing requests", "unpause")

    # ------------------------------------------------------------------ customers

    def request_job(
        self, spec: bytes, cpus: int, gpus: int, mem_mb: int, max_price: int, escrow: int
    ) -> int:
        """Requests a job; returns its id."""
        r = self._tx("requesting a job", "requestJob", cpus, gpus, mem_mb, max_price, escrow, spec)
        for ev in self.decode_events(r):
            if ev.name == "JobRequested":
                return int(ev.args["jobId"])
        raise RuntimeError("requestJob mined without a JobRequested event")

    def send_request_job(
        self,
        spec: bytes,
        cpus: int,
        gpus: int,
        mem_mb: int,
        max_price: int,
        escrow: int,
        gas: int | None = None,
    ) -> Pending:
        return self._send(
            "requesting a job", "requestJob", cpus, gpus, mem_mb, max_price, escrow, spec, gas=gas
        )

    def top_up(self, job_id: int, amount: int) -> TxReceipt:
        return self._tx(f"topping up job {job_id}", "topUp", job_id, amount)

    def cancel_job(self, job_id: int) -> TxReceipt:
        return self._tx(f"cancelling job {job_id}", "cancelJob", job_id)

    # ------------------------------------------------------------------ oracle

    def send_place_jobs(self, placements: Sequence[PlacementItem]) -> Pending:
        """Items are (job id, provider, terms) or (job id, provider, terms, quoted price); without
        a quote, the job's max price is the only bound on a provider raising its prices."""
        items = [_placement_tuple(p) for p in placements]
        data = self.contract.encode_abi("placeJobs", args=[items])
        gas = place_jobs_gas(
            bytes.fromhex(data[2:]), len(items), len({it[1].lower() for it in items})
        )
        return self.sender_or_fail().send(
            self.contract.address, data, f"placing {len(items)} jobs", gas=gas
        )

    def place_jobs(self, placements: Sequence[PlacementItem]) -> TxReceipt:
        return self.sender_or_fail().wait(self.send_place_jobs(placements))

    def place_job(
        self, job_id: int, provider: str, terms: Terms, *, quoted_price: int | None = None
    ) -> TxReceipt:
        """Places a job at `provider`'s price, which must not exceed `quoted_price` (default:
        the job's max price)."""
        item = _placement_tuple((job_id, provider, terms, quoted_price))
        return self._tx(f"placing job {job_id}", "placeJob", item)

    def reclaim_jobs(self, job_ids: Sequence[int]) -> TxReceipt:
        gas = BATCH_GAS_BASE + KEEP_GAS_PER_ITEM * len(job_ids)
        return self._tx(
            f"reclaiming {len(job_ids)} placements", "reclaimJobs", list(job_ids), gas=gas
        )

    def fail_jobs(self, silent: Sequence[tuple[int, int]]) -> TxReceipt:
        """Fails RUNNING jobs of silent providers, each given as (job id, the provider's last
        sign of life as a unix time): billed up to it, the rest refunded."""
        gas = BATCH_GAS_BASE + KEEP_GAS_PER_ITEM * len(silent)
        items = [(int(jid), max(0, int(seen))) for jid, seen in silent]
        return self._tx(
            f"failing {len(items)} jobs of silent providers", "failJobs", items, gas=gas
        )

    def expire_jobs(self, job_ids: Sequence[int]) -> TxReceipt:
        gas = BATCH_GAS_BASE + KEEP_GAS_PER_ITEM * len(job_ids)
        return self._tx(
            f"expiring {len(job_ids)} jobs out of credits", "expireJobs", list(job_ids), gas=gas
        )

    # ------------------------------------------------------------------ providers' jobs

    def accept_job(self, job_id: int) -> TxReceipt:
        return self._tx(f"accepting job {job_id}", "acceptJob", job_id)

    def start_job(self, job_id: int) -> TxReceipt:
        return self._tx(f"starting job {job_id}", "startJob", job_id)

    def complete_job(
        self, job_id: int, exit_code: int, result_digest: bytes = NO_DIGEST
    ) -> TxReceipt:
        return self._tx(
            f"completing job {job_id}",
            "completeJob",
            job_id,
            exit_code,
            _digest(result_digest, job_id),
        )

    def refuse_job(self, job_id: int, reason: str) -> TxReceipt:
        return self._tx(f"refusing job {job_id}", "refuseJob", job_id, reason)

    def provider_batch(self, steps: Sequence[StepItem]) -> TxReceipt:
        """Steps are (job id, action, exit code) or, for a COMPLETE that commits to results,
        (job id, action, exit code, result digest)."""
        gas = BATCH_GAS_BASE + STEP_GAS_PER_ITEM * len(steps)
        items = [
            (st[0], int(st[1]), st[2], _digest(st[3] if len(st) > 3 else NO_DIGEST, st[0]))
            for st in steps
        ]
        return self._tx(f"reporting {len(items)} job steps", "providerBatch", items, gas=gas)

    # ------------------------------------------------------------------ reading

    def get_job(self, job_id: int) -> JobView:
        v = self._call(f"reading job {job_id}", self.contract.functions.getJob(job_id))
        return JobView.from_call(job_id, v)

    def get_jobs(
        self,
        job_ids: Iterable[int],
        *,
        block: int | None = None,
        retry: Callable[[str, Callable[[], Any]], Any] | None = None,
    ) -> dict[int, JobView]:
        """The stored record of each job (at the latest block, or at `block`), read in JSON-RPC
        batches of `JOBS_PER_BATCH`. A job the chain does not know (`JobNotFound`, or not yet at
        that block) is left out; any other failure propagates, since a caller may take a job
        left out for one that does not exist. `retry(what, fn)` wraps each round trip (default:
        `retrying` with its default deadline)."""
        run = retry or self._retrying
        at: BlockIdentifier = "latest" if block is None else block
        ids = sorted(set(job_ids))
        out: dict[int, JobView] = {}
        for i in range(0, len(ids), JOBS_PER_BATCH):
            part = ids[i : i + JOBS_PER_BATCH]
            try:
                rows = run(f"reading {len(part)} jobs", partial(self._job_rows, part, at))
            except (ContractLogicError, Web3RPCError):
                # One unknown id fails the whole batch, and some endpoints refuse batches:
                # read these one by one.
                for jid in part:
                    what = f"reading job {jid}"
                    try:
                        row = run(what, partial(self._job_rows, [jid], at))[0]
                    except ContractLogicError as exc:
                        err = self._revert_error(exc, what)
                        if err.name == "JobNotFound":
                            continue  # not a job (at that block)
                        raise err from None
                    out[jid] = JobView.from_call(jid, row)
                continue
            out.update((j, JobView.from_call(j, r)) for j, r in zip(part, rows, strict=True))
        return out

    def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        return retrying(what, fn, rpc_url=self._url)

    def _job_rows(self, ids: Sequence[int], at: BlockIdentifier) -> list[Any]:
        if len(ids) == 1:
            return [self.contract.functions.getJob(ids[0]).call(block_identifier=at)]
        rows = self._job_rows_raw(ids, at)
        if rows is not None:
            return rows
        with self.w3.batch_requests() as batch:
            for jid in ids:
                batch.add(self.contract.functions.getJob(jid).call(block_identifier=at))
            return list(batch.execute())

    def _job_rows_raw(self, ids: Sequence[int], at: BlockIdentifier) -> list[Any] | None:
        """The batch as raw eth_calls, decoded here: web3's contract-call machinery (encoding,
        validation, formatters) cost ~1.6 ms a job, most of `audit all` on a long history.
        None when the endpoint does not batch or any call failed: the caller's web3 path then
        reads them again and turns each failure into words."""
        if not (at == "latest" or isinstance(at, int)):
            return None
        block = at if isinstance(at, str) else hex(at)
        selector, types = _function_abi("getJob")
        calls = [
            ("eth_call", [{"to": self.address, "data": selector + f"{jid:064x}"}, block])
            for jid in ids
        ]
        results = raw_batch(self.w3, calls)
        if results is None:
            return None
        rows = []
        for result in results:
            (v,) = abi_decode(types, bytes.fromhex(result[2:]))
            rows.append((checksum(v[0]), checksum(v[1]), *v[2:]))  # as web3 returns them
        return rows

    def job_count(self) -> int:
        return int(self._call("reading the job count", self.contract.functions.jobCount()))

    def funded_until(self, job_id: int) -> int:
        return int(
            self._call(
                f"reading job {job_id}'s funding", self.contract.functions.fundedUntil(job_id)
            )
        )

    def config(self) -> dict[str, Any]:
        oracle, fee, paused, acc, start = self._call(
            "reading the config", self.contract.functions.config()
        )
        return {
            "oracle": oracle,
            "fee_bps": fee,
            "paused": paused,
            "accept_timeout_s": acc,
            "start_timeout_s": start,
        }

    def request_fee(self) -> int:
        return int(self._call("reading the request fee", self.contract.functions.requestFee()))

    def placement_deadlines(self, job_id: int) -> tuple[int, int]:
        """(accept by, start by) of a placed job, fixed at its placement (0: not this stage)."""
        accept_by, start_by = self._call(
            f"reading job {job_id}'s deadlines",
            self.contract.functions.placementDeadlines(job_id),
        )
        return int(accept_by), int(start_by)

    def quote(self, provider: str, cpus: int, gpus: int, mem_mb: int) -> int:
        return int(
            self._call(
                "quoting a price", self.contract.functions.quote(provider, cpus, gpus, mem_mb)
            )
        )
