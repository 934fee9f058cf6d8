"""A small TCP proxy that a fault injector can cut and restore (the soak puts it between the
grid's services and anvil).

    proxy = TcpProxy(("127.0.0.1", anvil_port)).start()
    proxy.url            # http://127.0.0.1:<listen port>: give this to the services
    proxy.cut()          # open connections are closed, new ones refused (ECONNREFUSED)
    proxy.restore()      # the same port accepts again
    proxy.stop()

Threads, one accept loop plus two pumps per connection: the grid holds a handful of keep-alive
HTTP connections, so this stays small. Cutting closes the listening socket itself (rather than
accepting and dropping), so clients see exactly what an unreachable node gives them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

#: How long a blocked accept() or recv() waits before looking at the proxy's state again.
_POLL_S = 0.2
_CHUNK = 64 * 1024


@dataclass
class ProxyStats:
    connections: int = 0
    refused_while_cut: int = 0
    cuts: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Pair:
    client: socket.socket
    upstream: socket.socket
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for s in (self.client, self.upstream):
            # shutdown() wakes a pump blocked in recv() on the other thread; close() alone
            # does not on Linux.
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target`. Thread-safe: cut/restore from any thread."""

    def __init__(self, target: tuple[str, int], *, listen_port: int = 0, host: str = "127.0.0.1"):
        self.target = target
        self.host = host
        self.port = listen_port
        self.stats = ProxyStats()
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._open = threading.Event()  # set while the proxy accepts connections

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return not self._open.is_set()

    # ------------------------------------------------------------------ control

    def start(self) -> TcpProxy:
        self._listen()
        self._open.set()
        self._thread = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """Closes every open connection and refuses new ones until restore()."""
        with self._lock:
            if not self._open.is_set():
                return
            self._open.clear()
            self.stats.cuts += 1
            listener, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, set()
        if listener is not None:
            # shutdown() first: the accept thread's poll() holds the socket open, and on Linux
            # only shutdown() stops it listening at once (close() alone waits for the poll).
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                listener.close()
        for p in pairs:
            p.close()

    def restore(self) -> None:
        """Accepts connections again, on the same port."""
        with self._lock:
            if self._open.is_set() or self._stopping.is_set():
                return
            self._listen()
            self._open.set()

    def stop(self) -> None:
        self._stopping.set()
        self.cut()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # The port can be briefly held by a socket of the previous listener; retry a moment.
        deadline = time.monotonic() + 5
        while True:
            try:
                s.bind((self.host, self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    s.close()
                    raise
                time.sleep(0.05)
        s.listen(64)
        s.settimeout(_POLL_S)
        self.port = int(s.getsockname()[1])
        self._listener = s

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            listener = self._listener
            if listener is None or not self._open.is_set():
                time.sleep(_POLL_S / 4)
                continue
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by cut(): wait for restore()
                continue
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()  # the node itself is down: the client sees a closed connection
            return
        client.settimeout(None)
        upstream.settimeout(None)
        pair = _Pair(client, upstream)
        with self._lock:
            if not self._open.is_set():
                pair.close()
                self.stats.refused_while_cut += 1
                return
            self._pairs.add(pair)
            self.stats.connections += 1
        for src, dst, up in ((client, upstream, True), (upstream, client, False)):
            threading.Thread(
                target=self._pump, args=(pair, src, dst, up), name="proxy-pump", daemon=True
            ).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while not pair.closed.is_set():
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
        except OSError:
            pass
        finally:
            pair.close()
            with self._lock:
                self._pairs.discard(pair)
