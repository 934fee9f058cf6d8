"""Decoding the contracts' logs into plain records, fast and without a contract object.

A log may come raw (eth_getLogs or a receipt as JSON: hex strings) or as web3 formats it
(HexBytes, integers): both give the same `ChainEvent`. Events whose fields are all elementary
(uintN, intN, address, bool, bytesN, bytes, string) are decoded word by word; eth_abi's
validating decoder, which the others (tuples, arrays) go through, costs ~0.1 ms a log, and an
agent decodes every log of its receipts. `tests/integration/test_store.py` checks both ways
give the same on real logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode
from eth_utils import event_signature_to_log_topic

from metascheduler.chain.errors import _abi_type
from metascheduler.chain.types import checksum

#: (name, ABI type, indexed) of each field of an event, in the ABI's order.
Fields = list[tuple[str, str, bool]]


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


def _hex(v: Any) -> str:
    """0x and lowercase hex of a hash or topic given as a hex string or as bytes."""
    return v.lower() if isinstance(v, str) else "0x" + bytes(v).hex()


def _bytes(v: Any) -> bytes:
    return bytes.fromhex(v[2:]) if isinstance(v, str) else bytes(v)


def _int(v: Any) -> int:
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


def _elementary(typ: str) -> bool:
    if typ in ("address", "bool", "bytes", "string"):
        return True
    if typ.startswith(("uint", "int")):
        bits = typ[4:] if typ.startswith("uint") else typ[3:]
        return bits == "" or bits.isdigit()
    return typ.startswith("bytes") and typ[5:].isdigit()


class EventDecoder:
    """The events of one contract's ABI. ``by_words=False`` decodes every event through eth_abi
    (the reference the word-by-word decoding is tested against)."""

    def __init__(self, abi: list[dict[str, Any]], *, by_words: bool = True):
        self.abi = abi
        #: topic0 (0x hex) -> (name, fields), for every event
        self.events: dict[str, tuple[str, Fields]] = {}
        #: the same, for the events decoded word by word
        self.fast: dict[str, tuple[str, Fields]] = {}
        for it in abi:
            if it.get("type") != "event" or it.get("anonymous"):
                continue
            types = [_abi_type(i) for i in it["inputs"]]
            fields = [
                (i["name"], t, bool(i["indexed"])) for i, t in zip(it["inputs"], types, strict=True)
            ]
            topic = (
                "0x" + bytes(event_signature_to_log_topic(f"{it['name']}({','.join(types)})")).hex()
            )
            self.events[topic] = (it["name"], fields)
            # An indexed bytes or string is stored as its hash: not a word to read back.
            indexed_dynamic = any(ix and t in ("bytes", "string") for _, t, ix in fields)
            if by_words and all(_elementary(t) for t in types) and not indexed_dynamic:
                self.fast[topic] = (it["name"], fields)

    def topic(self, name: str) -> str:
        for t, (n, _) in self.events.items():
            if n == name:
                return t
        raise KeyError(name)

    def decode(self, log: Any, block_time: int | None = None) -> ChainEvent | None:
        """Decodes a log, raw or formatted by web3; None if it is not one of ours."""
        topics = log["topics"]
        if not topics:
            return None
        topic0 = _hex(topics[0])
        known = self.events.get(topic0)
        if known is None:
            return None
        name, fields = known
        if sum(1 for _, _, ix in fields if ix) != len(topics) - 1:
            return None  # same event name and types but another indexing: not ours
        data = _bytes(log["data"])
        if topic0 in self.fast:
            args = _by_words(name, fields, topics, data, log)
        else:
            args = _by_eth_abi(fields, topics, data)
        return ChainEvent(
            name=name,
            args=args,
            address=checksum(str(log["address"])),
            block_number=_int(log["blockNumber"]),
            block_hash=_hex(log["blockHash"]),
            tx_hash=_hex(log["transactionHash"]),
            log_index=_int(log["logIndex"]),
            block_time=block_time,
        )


def _by_words(
    name: str, fields: Fields, topics: list[Any], data: bytes, log: Any
) -> dict[str, Any]:
    args: dict[str, Any] = {}
    ti = 1
    head = 0
    for fname, typ, indexed in fields:
        if indexed:
            args[fname] = _word(typ, _bytes(topics[ti]))
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
    return args


def _by_eth_abi(fields: Fields, topics: list[Any], data: bytes) -> dict[str, Any]:
    args: dict[str, Any] = {}
    indexed = [(n, t) for n, t, ix in fields if ix]
    for (fname, typ), topic in zip(indexed, topics[1:], strict=True):
        (args[fname],) = decode([typ], _bytes(topic))
    plain = [(n, t) for n, t, ix in fields if not ix]
    values = decode([t for _, t in plain], data)
    for (fname, _), value in zip(plain, values, strict=True):
        args[fname] = value
    return args
