"""Reading the market: jobs (one, or many in JSON-RPC batches of raw calls), the job count,
funding, the settings and quotes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cache, partial
from typing import Any

from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import BlockIdentifier

from metascheduler.chain.abi import market_function
from metascheduler.chain.binding import Binding
from metascheduler.chain.errors import ChainError
from metascheduler.chain.rpc import CALLS_PER_BATCH, raw_batch
from metascheduler.chain.types import JobView, checksum


class Reads(Binding):
    def get_job(self, job_id: int, *, block: int | None = None) -> JobView:
        """The job's stored record at the latest block, or at `block`."""
        fn = self.contract.functions.getJob(job_id)
        v = self._call(f"reading job {job_id}", fn, block)
        return JobView.from_call(job_id, v)

    def get_jobs(
        self,
        job_ids: Iterable[int],
        *,
        block: int | None = None,
        retry: Callable[[str, Callable[[], Any]], Any] | None = None,
    ) -> dict[int, JobView]:
        """The stored record of each job (at the latest block, or at `block`), read in JSON-RPC
        batches of `CALLS_PER_BATCH`. A job the chain does not know (`JobNotFound`, or not yet
        at that block) is left out; any other failure propagates, since a caller may take a job
        left out for one that does not exist. `retry(what, fn)` wraps each round trip (default:
        `retrying` with its default deadline)."""
        run = retry or self._retrying
        at: BlockIdentifier = "latest" if block is None else block
        ids = sorted(set(job_ids))
        out: dict[int, JobView] = {}
        for i in range(0, len(ids), CALLS_PER_BATCH):
            part = ids[i : i + CALLS_PER_BATCH]
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

    def _job_rows(self, ids: Sequence[int], at: BlockIdentifier) -> list[Any]:
        rows = self._job_rows_raw(ids, at)
        if rows is not None:
            return rows
        if len(ids) == 1:
            return [self.contract.functions.getJob(ids[0]).call(block_identifier=at)]
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
        selector = _get_job_selector()
        calls = [
            ("eth_call", [{"to": self.address, "data": selector + f"{jid:064x}"}, block])
            for jid in ids
        ]
        results = raw_batch(self.w3, calls)
        if results is None:
            return None
        return [_job_row(self.address, j, r) for j, r in zip(ids, results, strict=True)]

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
        """Credit units each new request pays to the platform, not refunded."""
        return int(self._call("reading the request fee", self.contract.functions.requestFee()))

    def quote(self, provider: str, cpus: int, gpus: int, mem_mb: int) -> int:
        return int(
            self._call(
                "quoting a price", self.contract.functions.quote(provider, cpus, gpus, mem_mb)
            )
        )


#: getJob's return value as the word layout of `_job_row` reads it.
GET_JOB_OUTPUT = "(address,address,uint8,uint256,uint256,uint256,uint256,bytes16)"


@cache
def _get_job_selector() -> str:
    fn = market_function("getJob")
    if fn.output_types != [GET_JOB_OUTPUT]:
        raise RuntimeError(
            f"getJob now returns {fn.output_types}, not {GET_JOB_OUTPUT}: update chain/reads.py"
        )
    return fn.selector_hex


def _job_row(market: str, job_id: int, result: str) -> tuple[Any, ...]:
    """getJob's answer (a static tuple: eight 32-byte words), as web3 returns it (addresses
    checksummed), read word by word: eth_abi's decoder took ~0.15 ms a job."""
    data = bytes.fromhex(result[2:])
    if len(data) != 8 * 32:
        raise ChainError(
            f"reading job {job_id}: {market} answered {len(data)} bytes, not a job record (256): "
            "check that the market address is a JobMarket of this version"
        )
    w = [data[i : i + 32] for i in range(0, 256, 32)]
    return (
        checksum("0x" + w[0][12:].hex()),
        checksum("0x" + w[1][12:].hex()),
        *(int.from_bytes(x, "big") for x in w[2:7]),
        w[7][:16],
    )
