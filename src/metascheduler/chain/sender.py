"""Sends transactions signed locally with eth-account: nonces, EIP-1559 fees, receipts, retries.

The calls made for every transaction (the send, the receipt polls, the base fee) are raw
JSON-RPC (`chain.rpc.raw_call`, `chain.receipts`): web3's formatters cost more than the call.
Keys stay in memory: nothing here logs or prints a key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import TxReceipt

from metascheduler.chain.errors import ChainError, ErrorDecoder, RevertError
from metascheduler.chain.receipts import get_receipt
from metascheduler.chain.rpc import raw_call, retrying
from metascheduler.chain.signing import Signer

log = logging.getLogger(__name__)

GWEI = 10**9

#: How nodes refuse the same signed transaction a second time: geth "already known", anvil
#: "transaction already imported", Hardhat Network "Known transaction: 0x...".
ALREADY_SENT = ("already known", "already imported", "known transaction")


@dataclass
class Pending:
    """A signed transaction we sent and have not seen mined yet."""

    tx_hash: HexBytes
    raw: bytes
    nonce: int
    tx: dict[str, Any]
    what: str
    sent_at: float


class TxSender:
    """One account's transactions. Thread-safe: the nonce is handed out under a lock."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        decoder: ErrorDecoder,
        *,
        priority_fee_wei: int = 1 * GWEI,
        gas_margin: float = 1.25,
        receipt_timeout_s: float = 120.0,
        rpc_deadline_s: float = 300.0,
    ):
        self.w3 = w3
        self.account = account
        self.address = account.address
        self.decoder = decoder
        self.priority_fee_wei = priority_fee_wei
        self.gas_margin = gas_margin
        self.receipt_timeout_s = receipt_timeout_s
        self.rpc_deadline_s = rpc_deadline_s
        self._lock = threading.Lock()
        self._nonce: int | None = None
        self._chain_id: int | None = None
        self._fee_cache: tuple[float, int] | None = None
        self._url = str(getattr(w3.provider, "endpoint_uri", ""))
        self._signer = Signer(bytes(account.key))

    # ------------------------------------------------------------------ plumbing

    def _rpc(self, what: str, fn: Any) -> Any:
        return retrying(what, fn, deadline_s=self.rpc_deadline_s, rpc_url=self._url)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self._rpc("reading the chain id", lambda: self.w3.eth.chain_id))
        return self._chain_id

    def resync_nonce(self) -> int:
        """Takes the next nonce from the node (pending included): after a restart or a drop."""
        with self._lock:
            self._nonce = int(
                self._rpc(
                    "reading the account nonce",
                    lambda: self.w3.eth.get_transaction_count(self.address, "pending"),
                )
            )
            return self._nonce

    def _next_nonce(self) -> int:
        if self._nonce is None:
            self.resync_nonce()
        with self._lock:
            assert self._nonce is not None
            n = self._nonce
            self._nonce += 1
            return n

    def max_fee_wei(self) -> int:
        """Twice the latest base fee plus the tip: survives six full blocks of base-fee rises."""
        now = time.monotonic()
        if self._fee_cache and now - self._fee_cache[0] < 1.0:
            base = self._fee_cache[1]
        else:
            block = self._rpc(
                "reading the latest block",
                lambda: raw_call(self.w3, "eth_getBlockByNumber", ["latest", False]),
            )
            base = int(block.get("baseFeePerGas") or "0x0", 16)
            self._fee_cache = (now, base)
        return 2 * base + self.priority_fee_wei

    # ------------------------------------------------------------------ sending

    def estimate_gas(self, tx: dict[str, Any], what: str) -> int:
        """Estimates gas; a revert here is decoded into the contract's error in words."""
        call = {k: v for k, v in tx.items() if k in ("to", "data", "value")}
        call["from"] = self.address
        try:
            gas = self._rpc(f"estimating gas for {what}", lambda: self.w3.eth.estimate_gas(call))  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise self._revert(exc, what) from None
        except Web3RPCError as exc:
            raise ChainError(f"{what}: the node refused the gas estimate: {exc}") from exc
        # The margin covers state that changes between estimate and mining: a completion that
        # estimated with zero elapsed time pays no provider, but mined a block later it writes a
        # fresh balance slot (20,000 gas). Unused gas is not charged.
        return int(gas * self.gas_margin) + 50_000

    def send(
        self,
        to: str | None,
        data: bytes | str,
        what: str,
        *,
        gas: int | None = None,
        value: int = 0,
    ) -> Pending:
        """Signs and sends one transaction without waiting for it to be mined (`to=None`
        deploys)."""
        tx: dict[str, Any] = {"data": HexBytes(data), "value": value}
        if to is not None:
            tx["to"] = to
        tx["gas"] = gas if gas is not None else self.estimate_gas(tx, what)
        tx.update(
            chainId=self.chain_id,
            type=2,
            maxFeePerGas=self.max_fee_wei(),
            maxPriorityFeePerGas=self.priority_fee_wei,
            nonce=self._next_nonce(),
        )
        raw, tx_hash = self._signer.sign(tx)
        pending = Pending(HexBytes(tx_hash), raw, tx["nonce"], tx, what, time.monotonic())
        self.broadcast(pending)
        return pending

    def broadcast(self, p: Pending) -> None:
        """Sends the signed transaction (again: a send whose answer was lost, or one waited
        for too long); the node already knowing it is no error."""
        try:
            self._rpc(
                f"sending {p.what}",
                lambda: raw_call(self.w3, "eth_sendRawTransaction", ["0x" + p.raw.hex()]),
            )
        except Web3RPCError as exc:
            msg = str(exc).lower()
            if any(words in msg for words in ALREADY_SENT):
                return  # a retry of a send that did reach the node
            if "nonce too low" in msg or "nonce too high" in msg:
                self.resync_nonce()
                raise ChainError(
                    f"{p.what}: nonce {p.nonce} was refused ({exc}); the nonce was re-read from "
                    "the node: send again"
                ) from exc
            raise ChainError(f"{p.what}: the node refused the transaction: {exc}") from exc

    def wait(self, pending: Pending, timeout_s: float | None = None) -> TxReceipt:
        """Waits for the receipt; rebroadcasts a dropped transaction; decodes a revert."""
        deadline = time.monotonic() + (timeout_s or self.receipt_timeout_s)
        tx_hash = pending.tx_hash.to_0x_hex()
        delay = 0.05
        rebroadcast_at = time.monotonic() + 10.0
        while True:
            receipt = self._rpc(
                f"waiting for {pending.what}", lambda: get_receipt(self.w3, tx_hash)
            )
            if receipt is not None:
                break
            now = time.monotonic()
            if now > deadline:
                raise ChainError(
                    f"{pending.what}: transaction {pending.tx_hash.hex()} not mined after "
                    f"{timeout_s or self.receipt_timeout_s:.0f} s: check the node and the fees"
                )
            if now > rebroadcast_at:
                # A node restart or a reorg may have dropped it: the same signed bytes are safe
                # to send again (same nonce, same hash).
                self.broadcast(pending)
                rebroadcast_at = now + 10.0
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        if receipt["status"] != 1:
            raise self._replay_revert(pending, receipt)
        return receipt

    def receipt(self, pending: Pending) -> TxReceipt | None:
        """The receipt, or None while the transaction is not mined (one look, no wait); a
        transaction mined but failed raises its revert decoded."""
        tx_hash = pending.tx_hash.to_0x_hex()
        receipt = self._rpc(f"waiting for {pending.what}", lambda: get_receipt(self.w3, tx_hash))
        if receipt is None:
            return None
        if receipt["status"] != 1:
            raise self._replay_revert(pending, receipt)
        return receipt

    def known(self, pending: Pending) -> bool:
        """Whether the node still has the transaction, in its pool or mined: a reorg or a node
        restart may have dropped it."""
        tx_hash = pending.tx_hash.to_0x_hex()
        found = self._rpc(
            f"looking for {pending.what}",
            lambda: raw_call(self.w3, "eth_getTransactionByHash", [tx_hash]),
        )
        return found is not None

    def transact(
        self,
        to: str | None,
        data: bytes | str,
        what: str,
        *,
        gas: int | None = None,
        value: int = 0,
    ) -> TxReceipt:
        """Sends one transaction and waits for its receipt."""
        return self.wait(self.send(to, data, what, gas=gas, value=value))

    def wait_all(self, pendings: Sequence[Pending]) -> list[TxReceipt]:
        return [self.wait(p) for p in pendings]

    # ------------------------------------------------------------------ reverts

    def _revert(self, exc: ContractLogicError, what: str) -> RevertError:
        data = exc.data
        raw = HexBytes(data) if isinstance(data, str) and data.startswith("0x") else b""
        if raw:
            return self.decoder.decode(bytes(raw), what)
        return RevertError("Unknown", {}, f"{what}: reverted ({exc.message or exc})")

    def _replay_revert(self, pending: Pending, receipt: TxReceipt) -> ChainError:
        """A mined transaction failed: replay it as a call at its block to learn why."""
        call = {k: v for k, v in pending.tx.items() if k in ("to", "data", "value")}
        call["from"] = self.address
        call["gas"] = pending.tx["gas"]
        try:
            self.w3.eth.call(call, receipt["blockNumber"] - 1)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            return self._revert(exc, pending.what)
        except Exception as exc:  # the replay itself failed: say what we know
            log.debug("replay of %s failed: %s", pending.tx_hash.hex(), exc)
        if receipt["gasUsed"] >= pending.tx["gas"]:
            return ChainError(f"{pending.what}: ran out of gas ({receipt['gasUsed']} used)")
        return ChainError(f"{pending.what}: reverted in block {receipt['blockNumber']}")
