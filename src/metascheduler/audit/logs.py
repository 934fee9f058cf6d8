"""Reading a market's history from the chain itself: eth_getLogs in chunks, block times, and the
block the market was deployed in. Shared by the audit and the SDK's `list` and `history`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.exceptions import Web3RPCError

from metascheduler.chain.events import ChainEvent, EventDecoder
from metascheduler.chain.rawlogs import get_logs
from metascheduler.chain.rpc import get_blocks, in_ranges, retrying

#: Events that carry a job id as their first indexed argument (topic 1).
JOB_EVENTS = (
    "JobRequested",
    "JobPlaced",
    "JobStatusChanged",
    "JobReturned",
    "JobEnded",
    "JobToppedUp",
)

#: Many public endpoints refuse eth_getLogs over more blocks than this.
DEFAULT_CHUNK = 10_000


def id_topic(value: int) -> str:
    """An indexed uint256 as a topic."""
    return "0x" + value.to_bytes(32, "big").hex()


def address_topic(address: str) -> str:
    return "0x" + "00" * 12 + to_checksum_address(address)[2:].lower()


class LogReader:
    """The decoded logs of one contract, and the times of their blocks (cached)."""

    def __init__(self, w3: Web3, address: str, events: EventDecoder, *, chunk: int = DEFAULT_CHUNK):
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.events = events
        # Logs are read raw (chain.rawlogs) and decoded word by word (chain.events): web3's
        # formatters and eth_abi's validating decoder cost ~0.3 ms a log, most of reading a
        # long history.
        self.decoder = events
        self.chunk = chunk
        self._times: dict[int, int] = {}
        self._url = str(getattr(w3.provider, "endpoint_uri", ""))

    def head(self) -> int:
        return int(retrying("reading the block number", lambda: self.w3.eth.block_number))

    def topic(self, name: str) -> str:
        return self.events.topic(name)

    def fetch(
        self,
        from_block: int,
        to_block: int,
        topics: Sequence[Any] | None = None,
    ) -> list[ChainEvent]:
        """Every log of the contract matching `topics` in [from_block, to_block], in chain order.

        Splits the range into chunks, and halves a chunk the node refuses as too large."""

        def read(start: int, end: int) -> list[dict[str, Any]]:
            return retrying(
                f"reading logs of {self.address} in blocks {start}-{end}",
                partial(get_logs, self.w3, self.address, start, end, topics),
                rpc_url=self._url,
            )

        raw = in_ranges(read, from_block, to_block, self.chunk)
        out = [ev for ev in map(self.decoder.decode, raw) if ev is not None]
        out.sort(key=lambda e: (e.block_number, e.log_index))
        return out

    def job_logs(self, job_id: int, from_block: int, to_block: int) -> list[ChainEvent]:
        """Every event of one job (the job id is topic 1 of each)."""
        names = [self.topic(n) for n in JOB_EVENTS]
        return self.fetch(from_block, to_block, [names, id_topic(job_id)])

    def block_time(self, number: int) -> int:
        if number not in self._times:
            self.prefetch_times([number])
        return self._times[number]

    def prefetch_times(self, numbers: Iterable[int]) -> None:
        """Reads the timestamps of many blocks, in JSON-RPC batches where the node allows."""
        missing = sorted({n for n in numbers if n not in self._times})
        for i in range(0, len(missing), 1_000):
            part = missing[i : i + 1_000]
            blocks = retrying(
                f"reading the times of {len(part)} blocks",
                partial(get_blocks, self.w3, part),
                rpc_url=self._url,
            )
            for n, b in blocks.items():
                self._times[n] = b["timestamp"]


def deployment_block(w3: Web3, address: str) -> int:
    """The block the contract was created in, by bisection on its code (needs historical state,
    which anvil and archive nodes keep). Falls back to 0 when the node has pruned that state."""
    addr = to_checksum_address(address)
    url = str(getattr(w3.provider, "endpoint_uri", ""))

    def has_code(n: int) -> bool:
        code = retrying(
            f"reading the code of {addr}", lambda: w3.eth.get_code(addr, n), rpc_url=url
        )
        return len(code) > 0

    hi = int(retrying("reading the block number", lambda: w3.eth.block_number, rpc_url=url))
    try:
        if not has_code(hi):
            raise LookupError(f"no contract at {addr} on this chain (block {hi})")
        lo = 0
        while lo < hi:
            mid = (lo + hi) // 2
            if has_code(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo
    except Web3RPCError:
        return 0
