"""eth_getLogs as raw JSON-RPC, and a fast decoder for its logs.

web3's result formatters and eth_abi's validating decoder cost ~0.3 ms a log: a backlog of
thousands of requests took most of a second before the first placement. `get_logs` here (and
`chain.rpc.get_blocks` for their blocks) skip the formatters, and `RawLogDecoder` decodes
events whose fields are all elementary (uintN, intN, address, bool, bytesN, bytes, string) word
by word; any other event (tuples, arrays) goes through `chain.events.EventDecoder`. Both give the
same `ChainEvent` (tests/integration/test_store.py compares them on real logs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from eth_utils import event_signature_to_log_topic, to_checksum_address
from web3 import Web3

from metascheduler.chain.errors import _abi_type
from metascheduler.chain.events import ChainEvent, EventDecoder
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


@lru_cache(maxsize=65_536)
def checksum(addr: str) -> str:
    """Checksummed address, cached: a grid has far fewer parties than logs."""
    return to_checksum_address(addr)


def _as_int(v: Any) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def _word(typ: str, w: bytes) -> Any:
    if typ.startswith("uint"):
        return int.from_bytes(w, "big")
    if typ.startswith("int"):
        return int.from_bytes(w, "big", signed=True)
    if typ == "address":
        return "0x" + w[12:].hex()  # lowercase, as eth_abi gives it (store.codec checksums)
    if typ == "bool":
        return w[-1] != 0
    return w[: int(typ[5:])]  # bytesN


def _simple(typ: str) -> bool:
    if typ in ("address", "bool", "bytes", "string"):
        return True
    if typ.startswith(("uint", "int")):
        bits = typ[4:] if typ.startswith("uint") else typ[3:]
        return bits == "" or bits.isdigit()
    return typ.startswith("bytes") and typ[5:].isdigit()


class RawLogDecoder:
    def __init__(self, abi: list[dict[str, Any]]):
        self.slow = EventDecoder(abi)
        # topic0 (0x hex) -> (name, [(name, type, indexed)]) for events of elementary fields only
        self.fast: dict[str, tuple[str, list[tuple[str, str, bool]]]] = {}
        for it in abi:
            if it.get("type") != "event" or it.get("anonymous"):
                continue
            types = [_abi_type(i) for i in it["inputs"]]
            indexed_dynamic = any(
                i["indexed"] and t in ("bytes", "string")
                for i, t in zip(it["inputs"], types, strict=True)
            )
            if all(_simple(t) for t in types) and not indexed_dynamic:
                sig = f"{it['name']}({','.join(types)})"
                topic = "0x" + bytes(event_signature_to_log_topic(sig)).hex()
                fields = [
                    (i["name"], t, bool(i["indexed"]))
                    for i, t in zip(it["inputs"], types, strict=True)
                ]
                self.fast[topic] = (it["name"], fields)

    def decode(self, log: dict[str, Any], block_time: int | None = None) -> ChainEvent | None:
        """A raw eth_getLogs entry (hex strings) to a ChainEvent; None if not one of ours."""
        topics = [str(t).lower() for t in log["topics"]]
        if not topics:
            return None
        block_number = _as_int(log["blockNumber"])
        log_index = _as_int(log["logIndex"])
        known = self.fast.get(topics[0])
        if known is None:
            norm = dict(log, blockNumber=block_number, logIndex=log_index)
            ev = self.slow.decode(norm, block_time)
            return None if ev is None else _with_address(ev)
        name, fields = known
        data = bytes.fromhex(str(log["data"])[2:])
        args: dict[str, Any] = {}
        ti = 1
        head = 0
        for fname, typ, indexed in fields:
            if indexed:
                args[fname] = _word(typ, bytes.fromhex(topics[ti][2:]))
                ti += 1
                continue
            w = data[head : head + 32]
            head += 32
            if typ in ("bytes", "string"):
                off = int.from_bytes(w, "big")
                n = int.from_bytes(data[off : off + 32], "big")
                raw = data[off + 32 : off + 32 + n]
                if len(raw) != n:
                    raise ValueError(f"{name} log {log.get('transactionHash')}: truncated {fname}")
                args[fname] = raw.decode("utf-8") if typ == "string" else raw
            else:
                args[fname] = _word(typ, w)
        if ti != len(topics):
            return None  # same event name and types but another indexing: not ours
        return ChainEvent(
            name=name,
            args=args,
            address=checksum(str(log["address"])),
            block_number=block_number,
            block_hash=str(log["blockHash"]).lower(),
            tx_hash=str(log["transactionHash"]).lower(),
            log_index=log_index,
            block_time=block_time,
        )


def _with_address(ev: ChainEvent) -> ChainEvent:
    return replace(ev, address=checksum(ev.address))
