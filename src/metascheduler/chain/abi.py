"""The JobMarket's functions as the compiled ABI gives them, for callers that encode or decode
calls themselves (raw batched reads, the oracle's placeJobs calldata, transactions' calldata)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from eth_abi.codec import ABICodec
from eth_typing import ABIFunction
from eth_utils import function_signature_to_4byte_selector
from eth_utils.abi import abi_to_signature, get_abi_input_types, get_abi_output_types

from metascheduler.chain.artifacts import load_artifact


@dataclass(frozen=True)
class FunctionAbi:
    name: str
    #: e.g. "balanceOf(address)"
    signature: str
    selector: bytes
    output_types: list[str]
    input_types: list[str]

    @property
    def selector_hex(self) -> str:
        return "0x" + self.selector.hex()

    @property
    def takes_addresses(self) -> bool:
        """Whether an address is among its inputs (in a tuple or array too)."""
        return "address" in self.signature

    def calldata(self, codec: ABICodec, args: Sequence[Any]) -> bytes:
        """The call's data: the selector and `args` encoded by `codec` (web3's strict codec
        refuses a value that does not fit its type, as web3's `encode_abi` does). web3's
        `encode_abi` costs ~0.35 ms an item of a providerBatch, ~30x this: it matches the
        arguments against every function of the ABI and walks them through its normalizers.
        Those normalizers also check addresses' checksums, which a codec does not: a function
        that takes addresses is encoded by web3 (`takes_addresses`)."""
        return self.selector + codec.encode(self.input_types, list(args))


@cache
def market_function(name: str) -> FunctionAbi:
    """A JobMarket function by name, from the compiled ABI (whose names are not overloaded)."""
    for it in load_artifact("JobMarket").abi:
        if it.get("type") == "function" and it.get("name") == name:
            fn = cast(ABIFunction, it)
            sig = abi_to_signature(fn)
            return FunctionAbi(
                name,
                sig,
                bytes(function_signature_to_4byte_selector(sig)),
                get_abi_output_types(fn),
                get_abi_input_types(fn),
            )
    raise KeyError(f"JobMarket has no function {name}: rebuild the artifacts")


@cache
def pinned_selector(name: str, signature: str, where: str) -> bytes:
    """The selector of a JobMarket function whose calldata ``where`` writes word by word for
    ``signature``: a changed ABI stops there in words rather than sending wrong words."""
    fn = market_function(name)
    if fn.signature != signature:
        raise RuntimeError(f"{name} is now {fn.signature}, not {signature}: update {where}")
    return fn.selector
