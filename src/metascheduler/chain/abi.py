"""The JobMarket's functions as the compiled ABI gives them, for callers that encode or decode
calls themselves (raw batched reads, the oracle's placeJobs calldata)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import cast

from eth_typing import ABIFunction
from eth_utils import function_signature_to_4byte_selector
from eth_utils.abi import abi_to_signature, get_abi_output_types

from metascheduler.chain.artifacts import load_artifact


@dataclass(frozen=True)
class FunctionAbi:
    name: str
    #: e.g. "balanceOf(address)"
    signature: str
    selector: bytes
    output_types: list[str]

    @property
    def selector_hex(self) -> str:
        return "0x" + self.selector.hex()


@cache
def market_function(name: str) -> FunctionAbi:
    """A JobMarket function by name, from the compiled ABI."""
    for it in load_artifact("JobMarket").abi:
        if it.get("type") == "function" and it.get("name") == name:
            fn = cast(ABIFunction, it)
            sig = abi_to_signature(fn)
            return FunctionAbi(
                name,
                sig,
                bytes(function_signature_to_4byte_selector(sig)),
                get_abi_output_types(fn),
            )
    raise KeyError(f"JobMarket has no function {name}: rebuild the artifacts")
