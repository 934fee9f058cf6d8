"""eth_getLogs as raw JSON-RPC.

web3's result formatters cost ~0.2 ms a log: a backlog of thousands of requests took most of a
second before the first placement. `get_logs` here (and `chain.rpc.get_blocks` for their
blocks) skip them; `chain.events.EventDecoder` decodes the raw logs it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3 import Web3

from metascheduler.chain.rpc import raw_call


def get_logs(
    w3: Web3, address: str, start: int, end: int, topics: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """eth_getLogs of one contract in blocks start..end (and matching `topics`), unformatted."""
    params: dict[str, Any] = {"address": address, "fromBlock": hex(start), "toBlock": hex(end)}
    if topics is not None:
        params["topics"] = list(topics)
    result = raw_call(w3, "eth_getLogs", [params])
    return list(result or [])
