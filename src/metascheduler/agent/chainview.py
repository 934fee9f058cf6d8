"""What the agent reads from the chain: placements on it (logs filtered by its address), the
requests behind them (spec bytes and resources, by a topic filter on the job id), the current
record of many jobs at once (JSON-RPC batches of ``getJob``), and the head block.

Read-only, and nothing here decides anything: the service does.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from web3.exceptions import BlockNotFound
from web3.types import FilterParams, LogReceipt

from metascheduler.chain import Market
from metascheduler.chain.rpc import in_ranges, retrying
from metascheduler.chain.types import JobView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Head:
    number: int
    hash: str
    timestamp: int
    parent: str = ""


class Placed(NamedTuple):
    """A ``JobPlaced`` on this provider: the job and the block it was placed in."""

    job_id: int
    block: int


class ClockOffset:
    """How far the chain's clock runs ahead of this host's (negative: behind), from the heads
    the agent reads. Each reading, the head's time minus the host's time when read, is late by
    the head's age (a quiet devnet mines nothing for minutes), so the estimate is the highest
    of the last ``window`` readings: the freshest head seen lately."""

    def __init__(self, window: int = 32) -> None:
        self._readings: deque[float] = deque(maxlen=window)

    def read(self, head: Head, wall: float) -> float:
        self._readings.append(head.timestamp - wall)
        return max(self._readings)


class BlockPace:
    """When the next block is due, from the polls that saw each new one arrive: asking the node
    before then is wasted (an eth_blockNumber costs about a millisecond of CPU here and some of
    the node's, and an agent asks ten times a second). Learnt only from arrivals seen by a poll
    that followed a close earlier one (``close_s``); a block seen late starts the learning
    again, and until two blocks were seen arrive, every poll is made."""

    def __init__(self, close_s: float, margin_s: float, window: int = 8) -> None:
        self.close_s = close_s
        self.margin_s = margin_s
        self._intervals: deque[float] = deque(maxlen=window)
        self._number = -1
        self._polled_at = float("-inf")
        self._arrived: tuple[int, float] | None = None
        #: Blocks were seen arrive apart at least once: the chain mines on a clock, not as
        #: transactions come.
        self.on_a_clock = False

    def polled(self, number: int, at: float) -> None:
        """A poll at monotonic time ``at`` read ``number`` as the head's."""
        if number > self._number >= 0:
            if at - self._polled_at <= self.close_s:
                if self._arrived is not None:
                    then_number, then = self._arrived
                    self._intervals.append((at - then) / (number - then_number))
                    self.on_a_clock = True
                self._arrived = (number, at)
            else:
                # Seen late: after a busy round, or because the chain outran what was learnt
                # (the block came while the node was not asked): learnt again from scratch.
                self._arrived = None
                self._intervals.clear()
        self._number, self._polled_at = number, at

    def quiet_until(self) -> float:
        """Monotonic time before which no block is due (the shortest interval seen lately after
        the last arrival, less a margin); 0 when not known."""
        if self._arrived is None or not self._intervals:
            return 0.0
        return self._arrived[1] + min(self._intervals) - self.margin_s


@dataclass(frozen=True)
class JobRequest:
    """A job's ``JobRequested`` event: what the customer asked for and paid into escrow."""

    job_id: int
    customer: str
    escrow: int
    max_price_per_minute: int
    cpus: int
    gpus: int
    mem_mb: int
    spec: bytes
    block: int


def address_topic(address: str) -> str:
    return "0x" + "00" * 12 + address.lower().removeprefix("0x")


def uint_topic(value: int) -> str:
    return f"0x{value:064x}"


class ChainView:
    def __init__(
        self,
        market: Market,
        provider: str,
        *,
        start_block: int = 0,
        getlogs_max_range: int = 10_000,
        rpc_deadline_s: float = 60.0,
    ) -> None:
        self.market = market
        self.w3 = market.w3
        self.provider = provider
        self.start_block = start_block
        self.max_range = getlogs_max_range
        self.rpc_deadline_s = rpc_deadline_s
        self._url = str(getattr(self.w3.provider, "endpoint_uri", ""))
        self._requests: dict[int, JobRequest] = {}

    def _rpc(self, what: str, fn: Any) -> Any:
        return retrying(what, fn, deadline_s=self.rpc_deadline_s, rpc_url=self._url)

    # ------------------------------------------------------------------ blocks

    def head(self) -> Head:
        b = self._rpc("reading the latest block", lambda: self.w3.eth.get_block("latest"))
        return Head(
            int(b["number"]),
            b["hash"].to_0x_hex(),
            int(b["timestamp"]),
            b["parentHash"].to_0x_hex(),
        )

    def replaced(self, old: Head, new: Head) -> bool:
        """Whether ``old`` (an earlier head) is no longer in the chain that ``new`` heads: a
        reorg replaced it. Read from ``new`` alone when it is ``old`` or its child."""
        if new.number == old.number:
            return new.hash != old.hash
        if new.number == old.number + 1:
            return new.parent != old.hash
        return new.number < old.number or self.block_hash(old.number) != old.hash

    def block_number(self) -> int:
        return int(self._rpc("reading the block number", lambda: self.w3.eth.block_number))

    def block_hash(self, number: int) -> str | None:
        """The block's hash; None when the node has no such block (the chain changed under
        it, or this node is behind one read before): the caller takes the chain as changed."""
        try:
            b = self._rpc(f"reading block {number}", lambda: self.w3.eth.get_block(number))
        except BlockNotFound:
            return None
        return b["hash"].to_0x_hex() if b else None

    # ------------------------------------------------------------------ logs

    def _logs(
        self, what: str, topics: list[Any], from_block: int, to_block: int
    ) -> list[LogReceipt]:
        def read(lo: int, hi: int) -> list[LogReceipt]:
            params: FilterParams = {
                "address": self.market.address,
                "topics": topics,
                "fromBlock": lo,
                "toBlock": hi,
            }
            return list(
                self._rpc(f"{what} (blocks {lo}-{hi})", lambda: self.w3.eth.get_logs(params))
            )

        return in_ranges(read, from_block, to_block, self.max_range)

    def placements(self, from_block: int, to_block: int) -> list[Placed]:
        """Every ``JobPlaced`` on this provider in the range, in order."""
        topics = [self.market.events.topic("JobPlaced"), None, address_topic(self.provider)]
        out = []
        for raw in self._logs("reading placements", topics, from_block, to_block):
            ev = self.market.events.decode(raw)
            if ev is not None and ev.name == "JobPlaced":
                out.append(Placed(int(ev.args["jobId"]), ev.block_number))
        return out

    def request(self, job_id: int, before_block: int) -> JobRequest | None:
        """The job's ``JobRequested`` event, searched backwards from its placement block (cached:
        it never changes)."""
        if job_id in self._requests:
            return self._requests[job_id]
        topics = [self.market.events.topic("JobRequested"), uint_topic(job_id)]
        hi = before_block
        while hi >= self.start_block:
            lo = max(self.start_block, hi - self.max_range + 1)
            self._keep_requests(self._logs(f"reading the request of job {job_id}", topics, lo, hi))
            if job_id in self._requests:
                return self._requests[job_id]
            hi = lo - 1
        return None

    def prefetch_requests(self, job_ids: Sequence[int], before_block: int) -> None:
        """Reads the ``JobRequested`` events of many jobs in one call (over one log range back
        from ``before_block``), so that ``request`` finds them cached: a busy round admits tens
        of jobs, and one call each would cost a round trip each."""
        todo = [j for j in job_ids if j not in self._requests]
        if not todo:
            return
        topics = [self.market.events.topic("JobRequested"), [uint_topic(j) for j in todo]]
        lo = max(self.start_block, before_block - self.max_range + 1)
        self._keep_requests(
            self._logs("reading the requests of new placements", topics, lo, before_block)
        )

    def _keep_requests(self, logs: Iterable[LogReceipt]) -> None:
        for raw in logs:
            ev = self.market.events.decode(raw)
            if ev is None or ev.name != "JobRequested":
                continue
            a = ev.args
            self._requests[int(a["jobId"])] = JobRequest(
                job_id=int(a["jobId"]),
                customer=str(a["customer"]),
                escrow=int(a["escrow"]),
                max_price_per_minute=int(a["maxPricePerMinute"]),
                cpus=int(a["cpus"]),
                gpus=int(a["gpus"]),
                mem_mb=int(a["memMb"]),
                spec=bytes(a["spec"]),
                block=ev.block_number,
            )

    def forget(self, job_id: int) -> None:
        self._requests.pop(job_id, None)

    def registered_labels(self, to_block: int) -> list[str] | None:
        """Labels of this provider's last ``ProviderRegistered`` (the contract keeps them in the
        event only), or None if it never registered."""
        topics = [self.market.events.topic("ProviderRegistered"), address_topic(self.provider)]
        logs = self._logs("reading the provider's registration", topics, self.start_block, to_block)
        for raw in reversed(logs):
            ev = self.market.events.decode(raw)
            if ev is not None and ev.name == "ProviderRegistered":
                return list(ev.args["labels"])
        return None

    # ------------------------------------------------------------------ job records

    def jobs(self, job_ids: Iterable[int], block: int | None = None) -> dict[int, JobView]:
        """The stored record of each job (at the latest block, or at ``block``), in JSON-RPC
        batches. A job the chain does not know (``JobNotFound``) is left out."""
        return self.market.get_jobs(job_ids, block=block, retry=self._rpc)
