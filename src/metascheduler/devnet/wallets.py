"""Many customer wallets on a devnet, for the benchmarks: they sign locally and keep their own
nonces, so that requests are signed before a benchmark's clock starts and sent as raw
transactions, from a child process where the sender must not share the interpreter's lock.

Each wallet's key derives from a seed and its index: the same seed gives the same wallets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.types import RPCEndpoint

from metascheduler.billing import UNITS_PER_CREDIT
from metascheduler.chain import Market
from metascheduler.chain.abi import market_function
from metascheduler.chain.rpc import connect, raw_call
from metascheduler.chain.signing import Signer

GWEI = 10**9
#: Native coin each wallet is given for gas (anvil_setBalance).
GAS_MONEY_WEI = 10**21


@dataclass(frozen=True)
class Request:
    """What one ``requestJob`` asks for (the amounts in credit units)."""

    spec: bytes
    cpus: int
    gpus: int
    mem_mb: int
    max_price_per_minute: int
    escrow: int


class Wallets:
    """``n`` customer wallets of ``market`` (the one given signs nothing: wallets sign)."""

    def __init__(self, market: Market, n: int, *, seed: str) -> None:
        self.w3 = market.w3
        self.market = market
        self.accounts: list[LocalAccount] = [
            Account.from_key(keccak(f"{seed}-{i}".encode())) for i in range(n)
        ]
        self.signers = [Signer(bytes(a.key)) for a in self.accounts]
        self.nonces = [0] * n
        self.chain_id = self.w3.eth.chain_id
        self.next_job = 0

    def sign(self, i: int, to: str, data: Any, gas: int, tip: int = GWEI) -> bytes:
        """Wallet ``i``'s next transaction, signed."""
        tx = {
            "to": to,
            "data": data,
            "gas": gas,
            "maxFeePerGas": 50 * GWEI,
            "maxPriorityFeePerGas": tip,
            "nonce": self.nonces[i],
            "chainId": self.chain_id,
            "value": 0,
            "type": 2,
        }
        self.nonces[i] += 1
        return self.signers[i].sign(tx)[0]

    def fund(self, admin: Market, credits_each: int) -> None:
        """Gives each wallet gas money, mints it ``credits_each`` credits (``admin`` holds the
        minter role) and deposits them in the market."""
        units = credits_each * UNITS_PER_CREDIT
        self.fund_units(admin, minted=units, deposited=units)

    def fund_units(self, admin: Market, *, minted: int, deposited: int) -> None:
        """Gives each wallet gas money, mints it ``minted`` credit units and deposits
        ``deposited`` of them in the market."""
        for a in self.accounts:
            self.w3.provider.make_request(
                RPCEndpoint("anvil_setBalance"), [a.address, hex(GAS_MONEY_WEI)]
            )
        credit = admin.credit
        sender = admin.sender_or_fail()
        mints = [
            sender.send(
                credit.address,
                credit.encode_abi("mint", args=[a.address, minted]),
                "minting",
                gas=100_000,
            )
            for a in self.accounts
        ]
        sender.wait_all(mints)
        approve = credit.encode_abi("approve", args=[self.market.address, 2**256 - 1])
        deposit = self.market.contract.encode_abi("deposit", args=[deposited])
        deposits = []
        for i in range(len(self.accounts)):
            self.w3.eth.send_raw_transaction(self.sign(i, credit.address, approve, 80_000))
            deposits.append(
                self.w3.eth.send_raw_transaction(
                    self.sign(i, self.market.address, deposit, 120_000)
                )
            )
        # Each deposit follows its wallet's approval in nonce order: its receipt covers both.
        for h in deposits:
            self.w3.eth.wait_for_transaction_receipt(h, timeout=120)

    def requests(self, n: int, request: Callable[[int], Request], gas: int) -> list[bytes]:
        """``n`` signed ``requestJob`` transactions, round-robin over the wallets; ``request``
        gives the k-th job of this set of wallets (k counts on across calls)."""
        out = []
        for _ in range(n):
            i = self.next_job % len(self.accounts)
            r = request(self.next_job)
            self.next_job += 1
            args = (r.cpus, r.gpus, r.mem_mb, r.max_price_per_minute, r.escrow, r.spec)
            data = market_function("requestJob").calldata(self.w3.codec, args)
            out.append(self.sign(i, self.market.address, data, gas))
        return out


def send_steady(url: str, raws: list[bytes], rate: float) -> None:
    """Sends the raw transactions at ``rate`` per second (run it in a child process). Raw
    JSON-RPC: web3's formatting of each send would be the customers' CPU, which in reality is
    spent on their own machines, not on the grid's."""
    w3 = connect(url)
    start = time.monotonic()
    for k, raw in enumerate(raws):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        raw_call(w3, "eth_sendRawTransaction", ["0x" + raw.hex()])
