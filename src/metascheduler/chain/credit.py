"""Credits: the token's calls (mint, faucet, approve) and the market's deposits, withdrawals and
balances."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from eth_account import Account
from web3.exceptions import Web3RPCError
from web3.types import BlockIdentifier, TxReceipt

from metascheduler.chain.abi import market_function
from metascheduler.chain.binding import Binding
from metascheduler.chain.errors import ChainError
from metascheduler.chain.rpc import CALLS_PER_BATCH, raw_batch
from metascheduler.chain.types import checksum


class CreditCalls(Binding):
    def mint(self, to: str, amount: int) -> TxReceipt:
        return self._tx(f"minting {amount} units to {to}", "mint", to, amount, contract=self.credit)

    def faucet(self) -> TxReceipt:
        return self._tx("drawing from the devnet faucet", "faucet", contract=self.credit)

    def approve(self, amount: int) -> TxReceipt:
        return self._tx(
            "approving the market", "approve", self.address, amount, contract=self.credit
        )

    def deposit(self, amount: int) -> TxReceipt:
        return self._tx(f"depositing {amount} units", "deposit", amount)

    def deposit_with_permit(self, amount: int, deadline: int) -> TxReceipt:
        """Signs an EIP-2612 permit with our key and deposits in one transaction."""
        assert self.sender is not None
        owner = self.sender.address
        nonce = self._call("reading the permit nonce", self.credit.functions.nonces(owner))
        name = self._call("reading the token name", self.credit.functions.name())
        typed = {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "Permit",
            "domain": {
                "name": name,
                "version": "1",
                "chainId": self.sender.chain_id,
                "verifyingContract": self.credit.address,
            },
            "message": {
                "owner": owner,
                "spender": self.address,
                "value": amount,
                "nonce": nonce,
                "deadline": deadline,
            },
        }
        signed = Account.sign_typed_data(self.sender.account.key, full_message=typed)
        return self._tx(
            f"depositing {amount} units with a permit",
            "depositWithPermit",
            amount,
            deadline,
            signed.v,
            signed.r.to_bytes(32, "big"),
            signed.s.to_bytes(32, "big"),
        )

    def withdraw(self, amount: int) -> TxReceipt:
        return self._tx(f"withdrawing {amount} units", "withdraw", amount)

    def balance_of(self, account: str) -> int:
        return int(
            self._call("reading a market balance", self.contract.functions.balanceOf(account))
        )

    def balances_of(
        self,
        accounts: Iterable[str],
        *,
        block: int | None = None,
        retry: Callable[[str, Callable[[], Any]], Any] | None = None,
    ) -> dict[str, int]:
        """Each account's market balance (at the latest block, or at `block`), keyed as given,
        read as raw `eth_call`s in JSON-RPC batches of `CALLS_PER_BATCH`: an audit of a grid
        with thousands of wallets reads them all. A batch that the endpoint refuses, or with a
        failed item, is read again one account at a time, so that an error (ChainError) names
        the account and the block. `retry(what, fn)` wraps each round trip, as in `get_jobs`."""
        run = retry or self._retrying
        at: BlockIdentifier = "latest" if block is None else block
        tag = "latest" if block is None else hex(block)
        accts = list(dict.fromkeys(accounts))
        selector = market_function("balanceOf").selector_hex
        out: dict[str, int] = {}
        for i in range(0, len(accts), CALLS_PER_BATCH):
            part = accts[i : i + CALLS_PER_BATCH]
            calls = [
                (
                    "eth_call",
                    [{"to": self.address, "data": selector + a[2:].lower().zfill(64)}, tag],
                )
                for a in part
            ]
            results = run(f"reading {len(part)} balances", partial(raw_batch, self.w3, calls))
            if results is None:
                for a in part:
                    what = f"reading {a}'s balance at block {'latest' if block is None else block}"
                    fn = self.contract.functions.balanceOf(checksum(a))
                    try:
                        out[a] = int(run(what, partial(fn.call, block_identifier=at)))
                    except Web3RPCError as exc:
                        raise ChainError(f"{what}: the node refused: {exc}") from exc
                continue
            out.update((a, int(r, 16)) for a, r in zip(part, results, strict=True))
        return out

    def wallet_balance(self, account: str) -> int:
        return int(self._call("reading a wallet balance", self.credit.functions.balanceOf(account)))

    def accrued_fees(self) -> int:
        return int(self._call("reading accrued fees", self.contract.functions.accruedFees()))
