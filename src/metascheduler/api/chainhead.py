"""The chain's head block and id, read with a short timeout and cached: the API serves from the
store and must keep answering when the chain is slow or down."""

from __future__ import annotations

import logging
import threading
import time

from web3 import Web3

log = logging.getLogger(__name__)


class ChainHead:
    def __init__(self, rpc_url: str, *, timeout_s: float, cache_s: float):
        self.rpc_url = rpc_url
        self.cache_s = cache_s
        self._w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))
        self._lock = threading.Lock()
        self._head: int | None = None
        self._read_at = float("-inf")
        self._chain_id: int | None = None

    def block_number(self) -> int | None:
        """The head block, or None if the RPC did not answer (logged, not raised)."""
        with self._lock:
            if time.monotonic() - self._read_at < self.cache_s:
                return self._head
            was_up = self._head is not None or self._read_at == float("-inf")
            try:
                self._head = int(self._w3.eth.block_number)
            except Exception as exc:
                # Warn once per outage: health checks and scrapes would repeat it every second.
                level = logging.WARNING if was_up else logging.DEBUG
                log.log(level, "cannot read the chain head from %s: %s", self.rpc_url, exc)
                self._head = None
            self._read_at = time.monotonic()
            return self._head

    def chain_id(self) -> int:
        """The chain id (asked once, then kept). Raises if the RPC does not answer."""
        if self._chain_id is None:
            self._chain_id = int(self._w3.eth.chain_id)
        return self._chain_id
