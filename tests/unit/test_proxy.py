"""The soak's TCP proxy: forwards bytes, and a cut closes connections and refuses new ones."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from metascheduler.devnet.proxy import TcpProxy


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A TCP echo server on a free port, one thread per connection."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def loop() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield srv.getsockname()[:2]
    stop.set()
    t.join()
    srv.close()


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[TcpProxy]:
    with TcpProxy(echo) as p:
        yield p


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        # Send from another thread: the echo comes back while we send, and would fill the
        # buffers if nobody read it.
        threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_forwards_both_ways(proxy: TcpProxy) -> None:
    payload = bytes(range(256)) * 1000  # larger than one chunk
    assert _roundtrip(proxy.port, payload) == payload
    assert proxy.stats.connections == 1
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"


def test_cut_closes_open_connections(proxy: TcpProxy) -> None:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    proxy.cut()
    try:
        # The proxy closed its end: the next read sees EOF or a reset, never more data.
        s.sendall(b"after the cut")
        assert s.recv(100) == b""
    except OSError:
        pass
    finally:
        s.close()
    assert proxy.is_cut


def test_cut_refuses_new_connections_until_restored(proxy: TcpProxy) -> None:
    port = proxy.port
    proxy.cut()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    proxy.restore()
    assert proxy.port == port
    assert _roundtrip(port, b"back again") == b"back again"
    assert proxy.stats.cuts == 1


def test_cut_and_restore_are_idempotent(proxy: TcpProxy) -> None:
    proxy.cut()
    proxy.cut()
    proxy.restore()
    proxy.restore()
    assert not proxy.is_cut
    assert proxy.stats.cuts == 1
    assert _roundtrip(proxy.port, b"x") == b"x"


def test_upstream_down_closes_the_client(echo: tuple[str, int]) -> None:
    dead = socket.create_server(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there now
    with (
        TcpProxy(("127.0.0.1", port)) as p,
        socket.create_connection(("127.0.0.1", p.port), timeout=5) as s,
        contextlib.suppress(ConnectionResetError),
    ):
        assert s.recv(10) == b""
