"""What the RPC client takes from the environment (proxies): read once, at connect time."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from metascheduler.chain.rpc import connect


class _Node(BaseHTTPRequestHandler):
    """Answers every JSON-RPC call with block number 0x2a, and keeps the paths it was asked
    (a proxy is asked the whole URL)."""

    paths: list[str] = []

    def do_POST(self) -> None:
        call = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.paths.append(self.path)
        body = json.dumps({"jsonrpc": "2.0", "id": call["id"], "result": "0x2a"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    _Node.paths = []
    server = HTTPServer(("127.0.0.1", 0), _Node)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_a_proxy_set_in_the_environment_is_used(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", node)
    w3 = connect("http://rpc.invalid:8545")
    assert w3.eth.block_number == 42
    assert _Node.paths == ["http://rpc.invalid:8545/"]


def test_the_environment_is_read_at_connect_not_at_every_call(
    node: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``requests`` reads it at every call by default: a third of a short call's CPU."""
    w3 = connect(node)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    assert w3.eth.block_number == 42
    assert _Node.paths == ["/"]
