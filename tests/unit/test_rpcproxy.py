"""The public-endpoint proxy really refuses: each limit on its own, over HTTP, in front of a
stand-in node (a fake: a few canned JSON-RPC answers, enough to see what the proxy passes)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from metascheduler.chain import rpc
from metascheduler.chain.errors import RpcUnavailable
from metascheduler.devnet.rpcproxy import PublicEndpoint, RpcProxy

TX = "0x" + "ab" * 32


def _fake_answer(req: dict[str, Any]) -> Any:
    method, params = req["method"], req.get("params") or []
    if method == "eth_getLogs":
        lo, hi = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
        return [{"blockNumber": hex(n), "logIndex": "0x0"} for n in range(lo, hi + 1)]
    if method == "eth_sendRawTransaction":
        return TX
    if method == "eth_getTransactionReceipt":
        return {"transactionHash": params[0], "status": "0x1"}
    return "0x1"


@pytest.fixture
def fake_node() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            out = json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": _fake_answer(req)})
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out.encode())

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _post(url: str, body: Any) -> requests.Response:
    return requests.post(url, json=body, timeout=5)


def _call(method: str, *params: Any, rid: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": list(params)}


def _logs(lo: int, hi: int) -> dict[str, Any]:
    return _call("eth_getLogs", {"fromBlock": hex(lo), "toBlock": hex(hi)})


def test_log_ranges_wider_than_the_cap_are_refused(fake_node: str) -> None:
    with RpcProxy(fake_node, PublicEndpoint(max_log_range=10)) as p:
        assert len(_post(p.url, _logs(1, 10)).json()["result"]) == 10
        err = _post(p.url, _logs(1, 11)).json()["error"]
        assert err["code"] == -32005 and "block range" in err["message"]
        assert p.stats.refused_ranges == 1


def test_more_logs_than_the_cap_are_refused_unless_from_one_block(fake_node: str) -> None:
    with RpcProxy(fake_node, PublicEndpoint(max_log_results=3)) as p:
        assert len(_post(p.url, _logs(1, 3)).json()["result"]) == 3
        err = _post(p.url, _logs(1, 4)).json()["error"]
        assert err["code"] == -32005 and "query returned more than 3 results" in err["message"]
        assert p.stats.refused_results == 1
    with RpcProxy(fake_node, PublicEndpoint(max_log_results=0)) as p:
        assert len(_post(p.url, _logs(5, 5)).json()["result"]) == 1


def test_every_nth_request_is_answered_429(fake_node: str) -> None:
    with RpcProxy(fake_node, PublicEndpoint(rate_limit_every=3)) as p:
        codes = [_post(p.url, _call("eth_chainId")).status_code for _ in range(6)]
        assert codes == [200, 200, 429, 200, 200, 429]
        assert p.stats.rate_limited == 2


def test_batches_are_refused_with_one_error(fake_node: str) -> None:
    batch = [_call("eth_chainId", rid=1), _call("eth_blockNumber", rid=2)]
    with RpcProxy(fake_node, PublicEndpoint()) as p:
        assert [r["result"] for r in _post(p.url, batch).json()] == ["0x1", "0x1"]
    with RpcProxy(fake_node, PublicEndpoint(refuse_batches=True)) as p:
        answer = _post(p.url, batch).json()
        assert isinstance(answer, dict) and answer["error"]["code"] == -32600
        assert p.stats.refused_batches == 1


def test_a_sent_transactions_receipt_is_null_for_the_first_polls(fake_node: str) -> None:
    with RpcProxy(fake_node, PublicEndpoint(null_receipt_polls=2)) as p:
        assert _post(p.url, _call("eth_sendRawTransaction", "0x00")).json()["result"] == TX
        polls = [_post(p.url, _call("eth_getTransactionReceipt", TX)).json() for _ in range(3)]
        assert [r["result"] for r in polls[:2]] == [None, None]
        assert polls[2]["result"]["status"] == "0x1"
        assert p.stats.null_receipts == 2


def test_the_chain_layer_waits_out_429_then_says_so_in_words(
    fake_node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rpc, "RATE_LIMIT_FIRST_DELAY_S", 0.01)
    with RpcProxy(fake_node, PublicEndpoint(rate_limit_every=2)) as p:
        w3 = rpc.connect(p.url)
        assert [w3.eth.chain_id for _ in range(3)] == [1, 1, 1]
        assert p.stats.rate_limited >= 2
    with (
        RpcProxy(fake_node, PublicEndpoint(rate_limit_every=1)) as p,
        pytest.raises(RpcUnavailable, match="429 Too Many Requests after 8 tries"),
    ):
        rpc.connect(p.url).eth.get_block_number()


def test_the_chain_layer_sends_single_calls_once_a_batch_was_refused(fake_node: str) -> None:
    with RpcProxy(fake_node, PublicEndpoint(refuse_batches=True)) as p:
        w3 = rpc.connect(p.url)
        calls: list[tuple[str, list[Any]]] = [("eth_chainId", []), ("eth_blockNumber", [])]
        assert rpc.raw_batch(w3, calls) == ["0x1", "0x1"]
        assert rpc.raw_batch(w3, calls) == ["0x1", "0x1"]
        assert p.stats.refused_batches == 1  # remembered on that connection
