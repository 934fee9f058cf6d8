"""A JSON-RPC proxy that answers as public RPC endpoints do, in front of a devnet node.

    proxy = RpcProxy(anvil.url, PublicEndpoint.typical()).start()
    proxy.url            # give this to the services
    proxy.stats          # how often it refused, and how
    proxy.stop()

Public endpoints cap the block range and the result count of eth_getLogs, answer HTTP 429 when
a client asks too often, refuse JSON-RPC batches, and answer a receipt with null for a while
after the transaction was sent (their nodes behind a load balancer see it late). Each of these
is a setting here, so that the chain layer's handling of each is tested on a real node.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


@dataclass(frozen=True)
class PublicEndpoint:
    #: Widest eth_getLogs range in blocks (inclusive); None: any.
    max_log_range: int | None = None
    #: Most logs one eth_getLogs over several blocks may return; None: any.
    max_log_results: int | None = None
    #: Every Nth HTTP request is answered 429 Too Many Requests; 0: never.
    rate_limit_every: int = 0
    #: JSON-RPC batches are answered with one error, as many public endpoints do.
    refuse_batches: bool = False
    #: A sent transaction's receipt is answered null this many times before the real one.
    null_receipt_polls: int = 0

    @classmethod
    def typical(cls) -> PublicEndpoint:
        """All at once, tighter than any service's defaults, so that each limit is met on a
        small test history."""
        return cls(
            max_log_range=10,
            max_log_results=8,
            rate_limit_every=5,
            refuse_batches=True,
            null_receipt_polls=2,
        )


@dataclass
class RpcProxyStats:
    requests: int = 0
    rate_limited: int = 0
    refused_batches: int = 0
    refused_ranges: int = 0
    refused_results: int = 0
    null_receipts: int = 0


class RpcProxy:
    """Forwards JSON-RPC over HTTP to `target_url`, refusing as `limits` say. Thread-safe."""

    def __init__(self, target_url: str, limits: PublicEndpoint, *, host: str = "127.0.0.1"):
        self.target_url = target_url
        self.limits = limits
        self.stats = RpcProxyStats()
        self._lock = threading.Lock()
        self._receipt_polls: dict[str, int] = {}  # tx hash -> null answers still to give
        self._server = ThreadingHTTPServer((host, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RpcProxy:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="rpc-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> RpcProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ answers

    def answer(self, body: bytes) -> tuple[int, bytes]:
        """The HTTP status and body the endpoint gives to one POST."""
        with self._lock:
            self.stats.requests += 1
            limited = (
                self.limits.rate_limit_every > 0
                and self.stats.requests % self.limits.rate_limit_every == 0
            )
            if limited:
                self.stats.rate_limited += 1
        if limited:
            return 429, b"Too Many Requests"
        try:
            request = json.loads(body)
        except ValueError:
            return 200, _dump(_error(None, -32700, "parse error"))
        if isinstance(request, list):
            if self.limits.refuse_batches:
                with self._lock:
                    self.stats.refused_batches += 1
                return 200, _dump(_error(None, -32600, "batch requests are not supported"))
            return 200, _dump([self._one(r) for r in request])
        return 200, _dump(self._one(request))

    def _one(self, request: dict[str, Any]) -> dict[str, Any]:
        method, params, rid = request.get("method"), request.get("params") or [], request.get("id")
        if method == "eth_getLogs":
            refusal = self._log_range_refusal(params[0])
            if refusal is not None:
                return _error(rid, -32005, refusal)
        if method == "eth_getTransactionReceipt" and self._null_receipt(str(params[0]).lower()):
            return {"jsonrpc": "2.0", "id": rid, "result": None}
        response = self._forward(request)
        result = response.get("result")
        if method == "eth_sendRawTransaction" and isinstance(result, str):
            with self._lock:
                self._receipt_polls[result.lower()] = self.limits.null_receipt_polls
        cap = self.limits.max_log_results
        if method == "eth_getLogs" and cap is not None and len(result or []) > cap:
            if len({lg["blockNumber"] for lg in result or []}) == 1:
                return response  # one block's logs cannot be split: endpoints answer them
            with self._lock:
                self.stats.refused_results += 1
            return _error(rid, -32005, f"query returned more than {cap} results")
        return response

    def _log_range_refusal(self, flt: dict[str, Any]) -> str | None:
        cap = self.limits.max_log_range
        if cap is None or "blockHash" in flt:
            return None
        lo, hi = flt.get("fromBlock", "latest"), flt.get("toBlock", "latest")
        if not (str(lo).startswith("0x") and str(hi).startswith("0x")):
            return None  # "latest" and its kin: one block, or the node resolves them
        if int(hi, 16) - int(lo, 16) + 1 <= cap:
            return None
        with self._lock:
            self.stats.refused_ranges += 1
        return f"block range too large: at most {cap} blocks per eth_getLogs"

    def _null_receipt(self, tx_hash: str) -> bool:
        with self._lock:
            left = self._receipt_polls.get(tx_hash, 0)
            if left <= 0:
                return False
            self._receipt_polls[tx_hash] = left - 1
            self.stats.null_receipts += 1
            return True

    def _forward(self, request: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(self.target_url, json=request, timeout=30)
        r.raise_for_status()
        response: dict[str, Any] = r.json()
        return response


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


def _dump(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _handler(proxy: RpcProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the services' sessions expect

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                status, out = proxy.answer(body)
            except requests.RequestException as exc:
                status, out = 502, f"upstream node: {exc}".encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read the stats, not a line per request."""

    return Handler
