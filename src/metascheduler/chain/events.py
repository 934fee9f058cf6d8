"""Decoding the contracts' logs into plain records, fast and without a contract object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode
from eth_utils import event_signature_to_log_topic
from hexbytes import HexBytes

from metascheduler.chain.errors import _abi_type


@dataclass(frozen=True)
class ChainEvent:
    """One decoded log. (tx_hash, log_index) is its identity: replaying it changes nothing."""

    name: str
    args: dict[str, Any]
    address: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    block_time: int | None = field(default=None, compare=False)


class EventDecoder:
    def __init__(self, abi: list[dict[str, Any]]):
        self.abi = abi
        self._events: dict[bytes, tuple[str, list[dict[str, Any]]]] = {}
        for item in abi:
            if item.get("type") != "event":
                continue
            sig = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
            self._events[bytes(event_signature_to_log_topic(sig))] = (item["name"], item["inputs"])

    def topic(self, name: str) -> str:
        for t, (n, _) in self._events.items():
            if n == name:
                return "0x" + t.hex()
        raise KeyError(name)

    def decode(self, log: Any, block_time: int | None = None) -> ChainEvent | None:
        """Decodes a raw log (from eth_getLogs or a receipt); None if it is not one of ours."""
        topics = [HexBytes(t) for t in log["topics"]]
        if not topics:
            return None
        known = self._events.get(bytes(topics[0]))
        if known is None:
            return None
        name, inputs = known
        indexed = [i for i in inputs if i["indexed"]]
        plain = [i for i in inputs if not i["indexed"]]
        args: dict[str, Any] = {}
        for inp, topic in zip(indexed, topics[1:], strict=True):
            (args[inp["name"]],) = decode([_abi_type(inp)], bytes(topic))
        values = decode([_abi_type(i) for i in plain], bytes(HexBytes(log["data"])))
        for inp, value in zip(plain, values, strict=True):
            args[inp["name"]] = value
        return ChainEvent(
            name=name,
            args=args,
            address=log["address"],
            block_number=int(log["blockNumber"]),
            block_hash=HexBytes(log["blockHash"]).to_0x_hex(),
            tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
            log_index=int(log["logIndex"]),
            block_time=block_time,
        )
