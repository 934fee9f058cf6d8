"""eth_getLogs and eth_getBlockByNumber as raw JSON-RPC, and a fast decoder for their logs.

web3's result formatters and eth_abi's validating decoder cost ~0.3 ms a log: a backlog of
thousands of requests took most of a second before the first placement. The JSON-RPC calls
here skip the formatters, and `RawLogDecoder` decodes events whose fields are all elementary
(uintN, intN, address, bool, bytesN, bytes, string) word by word; any other event (tuples,
arrays) goes through `chain.events.EventDecoder`. Both give the same `ChainEvent`
(tests/integration/test_store.py compares them on real logs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from eth_utils import event_signature_to_log_topic, to_checksum_address
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import RPCEndpoint

from metascheduler.chain.errors import _abi_type
from metascheduler.chain.events import ChainEvent, EventDecoder


def rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    """One JSON-RPC call without web3's formatters; a node error raises Web3RPCError (as web3
    does), so callers' handling of refused ranges is unchanged."""
    resp = w3.provider.make_request(RPCEndpoint(method), params)
    if resp.get("error") is not None:
        err = resp["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise Web3RPCError(f"{method} failed: {msg}", rpc_response=resp)
    return resp.get("result")


def get_logs(w3: Web3, address: str, start: int, end: int) -> list[dict[str, Any]]:
    params = {"address": address, "fromBlock": hex(start), "toBlock": hex(end)}
    result = rpc(w3, "eth_getLogs", [params])
    return list(result or [])


#: Block headers per JSON-RPC batch: a range of logs may span hundreds of blocks.
BLOCKS_PER_BATCH = 100


def _header(b: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": int(b["number"], 16),
        "hash": str(b["hash"]).lower(),
        "parentHash": str(b["parentHash"]).lower(),
        "timestamp": int(b["timestamp"], 16),
    }


def get_block(w3: Web3, number: int) -> dict[str, Any]:
    """The block's number, hash, parentHash (0x lowercase) and timestamp (int)."""
    b = rpc(w3, "eth_getBlockByNumber", [hex(number), False])
    if b is None:
        raise Web3RPCError(f"eth_getBlockByNumber: block {number} not found (beyond the head?)")
    return _header(b)


def get_blocks(w3: Web3, numbers: Sequence[int]) -> dict[int, dict[str, Any]]:
    """`get_block` of each number, in JSON-RPC batches of `BLOCKS_PER_BATCH` (one round trip
    where a backlog's logs span a dozen blocks). A batch the endpoint refuses, or with any
    item missing or in error, is read again one call at a time, so errors read as
    `get_block`'s do."""
    out: dict[int, dict[str, Any]] = {}
    numbers = list(numbers)
    batch = getattr(w3.provider, "make_batch_request", None)
    for i in range(0, len(numbers), BLOCKS_PER_BATCH):
        part = numbers[i : i + BLOCKS_PER_BATCH]
        calls = [(RPCEndpoint("eth_getBlockByNumber"), [hex(n), False]) for n in part]
        try:
            resp: Any = batch(calls) if batch is not None and len(part) > 1 else None
        except NotImplementedError:
            resp = None
        if (
            isinstance(resp, list)
            and len(resp) == len(part)
            and all(r.get("error") is None and r.get("result") for r in resp)
        ):
            out.update((n, _header(r["result"])) for n, r in zip(part, resp, strict=True))
        else:
            out.update((n, get_block(w3, n)) for n in part)
    return out


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
