"""What every call on the contracts goes through: reads with retries and decoded reverts,
transactions through the sender, and the events of a receipt."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

from metascheduler.chain.abi import market_function
from metascheduler.chain.artifacts import load_artifact
from metascheduler.chain.errors import ErrorDecoder, RevertError
from metascheduler.chain.events import ChainEvent, EventDecoder
from metascheduler.chain.rpc import retrying
from metascheduler.chain.sender import Pending, TxSender
from metascheduler.chain.types import SkippedItem


class Binding:
    """A connection to one deployment, as one account (or read-only with `account=None`)."""

    def __init__(
        self, w3: Web3, address: str, account: LocalAccount | None = None, **sender_opts: Any
    ):
        self.w3 = w3
        market_art = load_artifact("JobMarket")
        credit_art = load_artifact("Credit")
        self.contract: Contract = w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=market_art.abi
        )
        self.decoder = ErrorDecoder([market_art.abi, credit_art.abi])
        self.events = EventDecoder(market_art.abi)
        self.address = self.contract.address
        self._credit: Contract | None = None
        self.credit_abi = credit_art.abi
        self.sender = TxSender(w3, account, self.decoder, **sender_opts) if account else None
        self._url = str(getattr(w3.provider, "endpoint_uri", ""))

    @property
    def credit(self) -> Contract:
        if self._credit is None:
            addr = self._call("reading the credit token", self.contract.functions.credit())
            self._credit = self.w3.eth.contract(address=addr, abi=self.credit_abi)
        return self._credit

    def _call(self, what: str, fn: Any, block: int | None = None) -> Any:
        """`fn` called at the latest block, or at `block`."""
        at = "latest" if block is None else block
        try:
            return retrying(what, partial(fn.call, block_identifier=at), rpc_url=self._url)
        except ContractLogicError as exc:
            raise self._revert_error(exc, what) from None

    def _retrying(self, what: str, fn: Callable[[], Any]) -> Any:
        return retrying(what, fn, rpc_url=self._url)

    def _revert_error(self, exc: ContractLogicError, what: str) -> RevertError:
        data = exc.data if isinstance(exc.data, str) else ""
        return self.decoder.decode(bytes.fromhex(data[2:]) if data else b"", what)

    def _tx(
        self,
        what: str,
        fn_name: str,
        *args: Any,
        gas: int | None = None,
        contract: Contract | None = None,
    ) -> TxReceipt:
        return self.sender_or_fail().wait(
            self._send(what, fn_name, *args, gas=gas, contract=contract)
        )

    def _send(
        self,
        what: str,
        fn_name: str,
        *args: Any,
        gas: int | None = None,
        contract: Contract | None = None,
    ) -> Pending:
        c = contract or self.contract
        return self.sender_or_fail().send(
            c.address, self._calldata(c, fn_name, args), what, gas=gas
        )

    def _calldata(self, c: Contract, fn_name: str, args: tuple[Any, ...]) -> bytes | str:
        """The market's functions without address inputs (the agents' and oracle's batches,
        requests) are encoded directly, the rest by web3 (see `FunctionAbi.calldata`)."""
        if c is self.contract:
            fn = market_function(fn_name)
            if not fn.takes_addresses:
                return fn.calldata(self.w3.codec, args)
        return c.encode_abi(fn_name, args=list(args))

    def sender_or_fail(self) -> TxSender:
        if self.sender is None:
            raise RuntimeError("this Market has no account: pass one to send transactions")
        return self.sender

    def decode_events(self, receipt: TxReceipt) -> list[ChainEvent]:
        out = []
        for log in receipt["logs"]:
            if log["address"].lower() == self.address.lower():
                ev = self.events.decode(log)
                if ev is not None:
                    out.append(ev)
        return out

    def skipped(self, receipt: TxReceipt) -> list[SkippedItem]:
        """Batch items the contract skipped, with its error in words."""
        out = []
        for ev in self.decode_events(receipt):
            if ev.name == "BatchItemSkipped":
                err = self.decoder.decode(ev.args["error"])
                out.append(SkippedItem(int(ev.args["index"]), int(ev.args["jobId"]), str(err)))
        return out
