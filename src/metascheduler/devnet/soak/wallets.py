"""Customer wallets that sign locally and send raw, so that customers are never the soak's
bottleneck: one JSON-RPC batch carries many signed transactions, and no one waits for receipts."""

from __future__ import annotations

import threading
import time

import httpx
from eth_utils import keccak
from web3 import Web3

from metascheduler.chain import Market
from metascheduler.chain.rpc import connect
from metascheduler.devnet.wallets import Wallets as BenchWallets

GWEI = 10**9
#: Gas limits: what each call needs with room (a requestJob of a few-hundred-byte spec uses about
#: 130,000). Anvil packs a block by the limits, so a generous one would halve its jobs per block.
REQUEST_GAS = 200_000
CANCEL_GAS = 120_000
CANCEL_SELECTOR = keccak(b"cancelJob(uint256)")[:4]


class Wallets(BenchWallets):
    """Wallets derived from a label (their keys are public: devnet only), each tracking its
    nonce, sending in JSON-RPC batches on a connection of their own. Thread-safe: one lock
    around signing and sending."""

    def __init__(self, rpc_url: str, market: Market, label: str, n: int):
        super().__init__(market, n, seed=f"soak-{label}")
        self.url = rpc_url
        self.w3: Web3 = connect(rpc_url)
        self.chain_id = int(self.w3.eth.chain_id)
        self.lock = threading.Lock()
        self.http = httpx.Client(timeout=60)
        self.errors: list[str] = []

    @property
    def addresses(self) -> list[str]:
        return [a.address for a in self.accounts]

    def request(self, i: int, spec: bytes, escrow: int, max_price: int) -> bytes:
        """A signed requestJob of a 1-CPU, 256 MB job from wallet i."""
        data = self.market.contract.encode_abi(
            "requestJob", args=[1, 0, 256, max_price, escrow, spec]
        )
        with self.lock:
            return self.sign(i, self.market.address, data, REQUEST_GAS)

    def same_requests(self, n: int, spec: bytes, escrow: int, max_price: int) -> list[bytes]:
        """n signed requestJob transactions of one spec, round-robin over the wallets (the
        call encoded once: encoding costs more than signing)."""
        data = self.market.contract.encode_abi(
            "requestJob", args=[1, 0, 256, max_price, escrow, spec]
        )
        with self.lock:
            return [
                self.sign(k % len(self.accounts), self.market.address, data, REQUEST_GAS)
                for k in range(n)
            ]

    def cancel(self, i: int, job_id: int) -> bytes:
        # The selector and one 32-byte word, by hand: web3's encoder is slow for 10,000 of them.
        data = CANCEL_SELECTOR + job_id.to_bytes(32, "big")
        with self.lock:
            return self.sign(i, self.market.address, data, CANCEL_GAS)

    def send(self, raws: list[bytes], chunk: int = 500) -> list[str]:
        """Sends signed transactions in JSON-RPC batches; returns their hashes. A refused one
        leaves a nonce gap behind it, so every wallet's nonce is then read again."""
        hashes: list[str] = []
        refused = False
        for k in range(0, len(raws), chunk):
            body = [
                {"jsonrpc": "2.0", "id": n, "method": "eth_sendRawTransaction", "params": [r]}
                for n, r in enumerate(Web3.to_hex(x) for x in raws[k : k + chunk])
            ]
            answers = self.http.post(self.url, json=body).json()
            for a in sorted(answers, key=lambda a: a["id"]):
                if "error" in a:
                    refused = True
                    if len(self.errors) < 20:
                        self.errors.append(str(a["error"])[:300])
                else:
                    hashes.append(a["result"])
        if refused:
            self.resync()
        return hashes

    def wait_mined(self, timeout_s: float = 300.0) -> bool:
        """Waits until every transaction these wallets sent is mined (their nonces on chain
        caught up); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                want = list(self.nonces)
            if all(
                int(self.w3.eth.get_transaction_count(a.address)) >= n
                for a, n in zip(self.accounts, want, strict=True)
            ):
                return True
            time.sleep(1.0)
        return False

    def resync(self) -> None:
        with self.lock:
            for i, a in enumerate(self.accounts):
                self.nonces[i] = int(self.w3.eth.get_transaction_count(a.address, "pending"))
