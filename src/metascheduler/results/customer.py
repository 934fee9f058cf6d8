"""The customer's public key, read from the chain: the `JobRequested` event names the
transaction, and the transaction's signature gives the key. Nobody has to publish it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from web3.types import RPCEndpoint

from metascheduler.chain import Market
from metascheduler.chain.rawlogs import get_logs
from metascheduler.chain.rpc import retrying, walk_ranges
from metascheduler.chain.types import checksum

from .errors import ResultsError
from .keys import public_key_from_raw_transaction

#: Blocks searched at a time, newest first, for a job's request (a window the node may refuse
#: is read in halves, as the chain layer's readers do).
SEARCH_RANGE = 10_000


@dataclass(frozen=True)
class Request:
    """Who requested a job, and in which transaction (the job's record forgets its customer
    once it ends; the event does not)."""

    tx_hash: str
    customer: str


def find_request(market: Market, job_id: int, *, from_block: int, to_block: int) -> Request:
    """The `JobRequested` event of `job_id`, searched backwards from `to_block`."""
    topics = [market.events.topic("JobRequested"), f"0x{job_id:064x}"]
    decoder = market.events
    url = str(getattr(market.w3.provider, "endpoint_uri", ""))

    def read(lo: int, hi: int) -> list[dict[str, Any]]:
        return retrying(
            f"reading the request of job {job_id} in blocks {lo}-{hi}",
            partial(get_logs, market.w3, market.address, lo, hi, topics),
            rpc_url=url,
        )

    for part in walk_ranges(read, from_block, to_block, SEARCH_RANGE, newest_first=True):
        for raw in part:
            ev = decoder.decode(raw)
            if ev is not None and ev.name == "JobRequested":
                return Request(ev.tx_hash, checksum(str(ev.args["customer"])))
    raise ResultsError(
        f"no JobRequested event of job {job_id} in blocks {from_block}-{to_block} of market "
        f"{market.address}"
    )


def customer_public_key(market: Market, tx_hash: str, customer: str) -> bytes:
    """The 64-byte public key of `customer`, from the signature of their transaction."""
    raw = retrying(
        f"reading transaction {tx_hash}",
        lambda: market.w3.provider.make_request(
            RPCEndpoint("eth_getRawTransactionByHash"), [tx_hash]
        ),
    )
    result = raw.get("result") if isinstance(raw, dict) else None
    if not result:
        raise ResultsError(f"the node has no transaction {tx_hash}: {raw.get('error', '')}")
    return public_key_from_raw_transaction(
        bytes.fromhex(str(result).removeprefix("0x")), expected_sender=customer
    )
