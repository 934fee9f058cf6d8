"""The JobMarket and Credit contracts, bound for Python: every call the parts of the grid make.

`Market` gathers the calls: credits (`chain.credit`), reads (`chain.reads`), and below, the
providers', customers', oracle's and admin's transactions. Gas limits live in `chain.gas`,
deployment in `chain.deploy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3.types import TxReceipt

from metascheduler.chain import calldata
from metascheduler.chain.credit import CreditCalls
from metascheduler.chain.deploy import deploy_contracts
from metascheduler.chain.gas import (
    BATCH_GAS_BASE,
    KEEP_GAS_PER_ITEM,
    STEP_GAS_PER_ITEM,
    place_jobs_gas,
)
from metascheduler.chain.reads import Reads
from metascheduler.chain.sender import Pending
from metascheduler.chain.types import (
    AT_NOW,
    NO_DIGEST,
    Hardware,
    Placement,
    Prices,
    ProviderStatus,
    ProviderStep,
    Terms,
)


class Market(CreditCalls, Reads):
    """A connection to one deployment, as one account (or read-only with `account=None`)."""

    deploy = staticmethod(deploy_contracts)

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

    def remove_provider(self, provider: str) -> TxReceipt:
        return self._tx(f"removing provider {provider}", "removeProvider", provider)

    def get_provider(self, provider: str) -> tuple[ProviderStatus, Hardware, Prices]:
        status, hw, pr = self._call(
            f"reading provider {provider}", self.contract.functions.getProvider(provider)
        )
        return ProviderStatus(status), Hardware(*hw), Prices(*pr)

    # ------------------------------------------------------------------ admin

    def set_oracle(self, oracle: str) -> TxReceipt:
        return self._tx(f"handing the oracle's role to {oracle}", "setOracle", oracle)

    def withdraw_fees(self, to: str, amount: int) -> TxReceipt:
        return self._tx(f"withdrawing {amount} units of fees to {to}", "withdrawFees", to, amount)

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
        self,
        spec: bytes,
        cpus: int,
        gpus: int,
        mem_mb: int,
        *,
        max_price_per_minute: int,
        escrow: int,
    ) -> int:
        """Requests a job; returns its id. The two amounts are keyword-only: side by side they
        are easy to swap, and the contract takes them in another order."""
        pending = self.send_request_job(
            spec, cpus, gpus, mem_mb, max_price_per_minute=max_price_per_minute, escrow=escrow
        )
        r = self.sender_or_fail().wait(pending)
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
        *,
        max_price_per_minute: int,
        escrow: int,
        gas: int | None = None,
    ) -> Pending:
        return self._send(
            "requesting a job",
            "requestJob",
            cpus,
            gpus,
            mem_mb,
            max_price_per_minute,
            escrow,
            spec,
            gas=gas,
        )

    def top_up(self, job_id: int, amount: int) -> TxReceipt:
        return self._tx(f"topping up job {job_id}", "topUp", job_id, amount)

    def cancel_job(self, job_id: int) -> TxReceipt:
        return self._tx(f"cancelling job {job_id}", "cancelJob", job_id)

    # ------------------------------------------------------------------ oracle

    def send_place_jobs(self, placements: Sequence[Placement]) -> Pending:
        """Without a quote, the job's max price is the only bound on a provider raising its
        prices."""
        items = [_placement_tuple(p) for p in placements]
        data = self.contract.encode_abi("placeJobs", args=[items])
        gas = place_jobs_gas(
            bytes.fromhex(data[2:]), len(items), len({it[1].lower() for it in items})
        )
        return self.sender_or_fail().send(
            self.contract.address, data, f"placing {len(items)} jobs", gas=gas
        )

    def place_jobs(self, placements: Sequence[Placement]) -> TxReceipt:
        return self.sender_or_fail().wait(self.send_place_jobs(placements))

    def place_job(
        self, job_id: int, provider: str, terms: Terms, *, quoted_price: int | None = None
    ) -> TxReceipt:
        """Places a job at `provider`'s price, which must not exceed `quoted_price` (default:
        the job's max price)."""
        item = _placement_tuple(Placement(job_id, provider, terms, quoted_price=quoted_price))
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
        return self.sender_or_fail().wait(self.send_expire_jobs(job_ids))

    def send_expire_jobs(self, job_ids: Sequence[int]) -> Pending:
        gas = BATCH_GAS_BASE + KEEP_GAS_PER_ITEM * len(job_ids)
        return self._send(
            f"expiring {len(job_ids)} jobs out of credits", "expireJobs", list(job_ids), gas=gas
        )

    # ------------------------------------------------------------------ providers' jobs

    def accept_job(self, job_id: int) -> TxReceipt:
        return self._tx(f"accepting job {job_id}", "acceptJob", job_id)

    def start_job(self, job_id: int, started_at: int = AT_NOW) -> TxReceipt:
        """Starts a SCHEDULED job; metering starts at `started_at` (the backend's start, in the
        chain's clock), clamped between the acceptance and the block (default: the block)."""
        return self._tx(f"starting job {job_id}", "startJob", job_id, started_at)

    def complete_job(
        self,
        job_id: int,
        exit_code: int,
        result_digest: bytes = NO_DIGEST,
        ended_at: int = AT_NOW,
    ) -> TxReceipt:
        """Ends a RUNNING job, billed up to `ended_at` (the backend's end, in the chain's clock),
        clamped between the start and the block (default: the block); `result_digest` (32
        bytes) commits to its results in JobEnded."""
        digest = _digest(result_digest, job_id)
        return self._tx(
            f"completing job {job_id}", "completeJob", job_id, exit_code, digest, ended_at
        )

    def refuse_job(self, job_id: int, reason: str) -> TxReceipt:
        return self.sender_or_fail().wait(self.send_refuse_job(job_id, reason))

    def send_refuse_job(self, job_id: int, reason: str) -> Pending:
        return self._send(f"refusing job {job_id}", "refuseJob", job_id, reason)

    def provider_batch(self, steps: Sequence[ProviderStep]) -> TxReceipt:
        """Steps on the provider's jobs; a COMPLETE commits to its step's result digest (JobEnded's
        `resultDigest`)."""
        return self.sender_or_fail().wait(self.send_provider_batch(steps))

    def send_provider_batch(self, steps: Sequence[ProviderStep]) -> Pending:
        gas = BATCH_GAS_BASE + STEP_GAS_PER_ITEM * len(steps)
        for s in steps:
            _digest(s.result_digest, s.job_id)
        data = calldata.provider_batch(steps)
        what = f"reporting {len(steps)} job steps"
        return self.sender_or_fail().send(self.contract.address, data, what, gas=gas)


def _placement_tuple(p: Placement) -> tuple[int, str, tuple[Any, ...], int]:
    return (p.job_id, p.provider, p.terms.as_tuple(), p.quote())


def _digest(value: bytes, job_id: int) -> bytes:
    if len(value) != 32:
        raise ValueError(
            f"job {job_id}: a result digest is 32 bytes (a keccak256 or sha256 hash), "
            f"not {len(value)}"
        )
    return bytes(value)
