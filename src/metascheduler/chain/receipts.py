"""Transaction receipts read as raw JSON-RPC and put in web3's shape directly.

web3 formats a receipt through its generic formatter stack (a formatter per field, applied by
walking the whole result, then every mapping wrapped again as an AttributeDict): ~0.2 ms a log,
and an agent's ``providerBatch`` of 100 steps carries two to three hundred logs, while its
sender polls for the receipt several times a block. Here each field is converted once, to what
web3's ``RECEIPT_FORMATTERS`` and ``LOG_ENTRY_FORMATTERS`` give (integers, HexBytes, checksummed
addresses, AttributeDicts); fields those leave alone stay as the node sent them.
`tests/integration/test_raw_rpc.py` checks the result equals web3's on real receipts.
"""

from __future__ import annotations

from typing import Any, cast

from hexbytes import HexBytes
from web3 import Web3
from web3.datastructures import AttributeDict
from web3.types import TxReceipt

from metascheduler.chain.rpc import raw_call
from metascheduler.chain.types import checksum

_INTS = (
    "blockNumber",
    "transactionIndex",
    "cumulativeGasUsed",
    "status",
    "gasUsed",
    "effectiveGasPrice",
    "type",
    "blobGasPrice",
    "blobGasUsed",
)
_HASHES = ("blockHash", "transactionHash", "logsBloom")
_ADDRESSES = ("from", "to", "contractAddress")


def get_receipt(w3: Web3, tx_hash: str) -> TxReceipt | None:
    """The transaction's receipt (web3's shape), or None while it is not mined. A node error
    raises Web3RPCError, as `raw_call` does."""
    raw = raw_call(w3, "eth_getTransactionReceipt", [tx_hash])
    return None if raw is None else receipt_from_json(raw)


def receipt_from_json(raw: dict[str, Any]) -> TxReceipt:
    out = dict(raw)
    for key in _INTS:
        v = out.get(key)
        if isinstance(v, str):
            out[key] = int(v, 16)
    for key in _HASHES:
        v = out.get(key)
        if v is not None:
            out[key] = HexBytes(v)
    for key in _ADDRESSES:
        v = out.get(key)
        if isinstance(v, str):
            out[key] = checksum(v)
    out["logs"] = [_log(lg) for lg in raw.get("logs") or []]
    return cast(TxReceipt, AttributeDict(out))


def _log(raw: dict[str, Any]) -> AttributeDict[str, Any]:
    out = dict(raw)
    for key in ("blockNumber", "transactionIndex", "logIndex"):
        v = out.get(key)
        if isinstance(v, str):
            out[key] = int(v, 16)
    for key in ("blockHash", "transactionHash"):
        v = out.get(key)
        if v is not None:
            out[key] = HexBytes(v)
    out["address"] = checksum(raw["address"])
    out["topics"] = [HexBytes(t) for t in raw["topics"]]
    out["data"] = HexBytes(raw["data"])
    return AttributeDict(out)
