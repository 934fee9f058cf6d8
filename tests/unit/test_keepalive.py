"""JSON-RPC posted on kept-alive connections without `requests` (`chain.keepalive`): one
connection for many calls, a connection the server closed replaced unseen, and failures that read
as they do through `requests` (so retries and their words stay the same)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from metascheduler.chain.errors import RpcUnavailable
from metascheduler.chain.keepalive import KeepAlivePoster
from metascheduler.chain.rpc import RATE_LIMIT_TRIES, connect, retrying
from metascheduler.devnet.anvil import free_port


class _Node(ThreadingHTTPServer):
    daemon_threads = True
    #: Connections accepted, and how the next answers go: "ok", "close" (answer, saying the
    #: connection closes), "drop" (answer, then close the connection without a word, as a
    #: node does with an idle one), "429", "slow" (answer after 1 s).
    connections = 0
    mode = "ok"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Node

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        call = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.server.mode
        if mode == "slow":
            time.sleep(1.0)
        status = 429 if mode == "429" else 200
        body = json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": "0x2a"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if mode == "close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if mode in ("close", "drop"):
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Node]:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = _Node(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(node: _Node) -> str:
    return f"http://127.0.0.1:{node.server_address[1]}"


def test_calls_share_one_kept_alive_connection(node: _Node) -> None:
    w3 = connect(_url(node))
    assert [w3.eth.block_number for _ in range(20)] == [42] * 20
    assert node.connections == 1


@pytest.mark.parametrize("mode", ["close", "drop"])
def test_a_connection_the_node_closed_is_replaced_unseen(node: _Node, mode: str) -> None:
    w3 = connect(_url(node))
    node.mode = mode
    assert w3.eth.block_number == 42
    node.mode = "ok"
    time.sleep(0.1)  # the node's side of the dropped connection is closed by now
    assert [w3.eth.block_number for _ in range(3)] == [42] * 3
    assert node.connections == 2


def test_small_writes_are_not_held_back(node: _Node) -> None:
    """Headers and body go in two writes: Nagle's algorithm is off, as urllib3 has it."""
    w3 = connect(_url(node))
    assert w3.eth.block_number == 42
    poster = w3.provider._request_session_manager._direct  # type: ignore[attr-defined]
    sock = poster._local.conn.sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_each_thread_has_its_own_connection(node: _Node) -> None:
    w3 = connect(_url(node))
    got: list[int] = []
    threads = [
        threading.Thread(target=lambda: got.extend(w3.eth.block_number for _ in range(5)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [42] * 20 and node.connections == 4


def test_an_http_error_status_raises_as_requests_does(node: _Node) -> None:
    node.mode = "429"
    poster = KeepAlivePoster(_url(node), 5.0)
    with pytest.raises(requests.HTTPError) as err:
        poster.post(b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}', {})
    assert err.value.response is not None and err.value.response.status_code == 429


def test_a_node_that_keeps_answering_429_is_given_up_on_in_words(
    node: _Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("metascheduler.chain.rpc.RATE_LIMIT_FIRST_DELAY_S", 0.001)
    node.mode = "429"
    w3 = connect(_url(node))
    with pytest.raises(RpcUnavailable, match=f"still answers 429 .* after {RATE_LIMIT_TRIES}"):
        w3.eth.block_number  # noqa: B018 - the call is the test


def test_a_timeout_raises_as_requests_does_and_is_retried(node: _Node) -> None:
    node.mode = "slow"
    w3 = connect(_url(node), timeout_s=0.2)
    with pytest.raises(RpcUnavailable, match=r"reading: .* did not answer .*\(Timeout\)"):
        retrying("reading", lambda: w3.eth.block_number, deadline_s=0.5, first_delay_s=0.1)


def test_a_node_that_is_down_reads_as_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    w3 = connect(url)
    with pytest.raises(requests.ConnectionError, match=r"127\.0\.0\.1"):
        w3.eth.block_number  # noqa: B018
    with pytest.raises(RpcUnavailable, match=rf"{url} did not answer .*\(ConnectionError\)"):
        retrying("reading", lambda: w3.eth.block_number, deadline_s=0.3, rpc_url=url)


def test_only_plain_http_is_posted_directly() -> None:
    with pytest.raises(ValueError, match="only plain http"):
        KeepAlivePoster("https://rpc.example.org", 5.0)
