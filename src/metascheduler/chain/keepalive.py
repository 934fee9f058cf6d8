"""JSON-RPC over plain HTTP on one kept-alive connection per thread, with the standard library.

`requests` spends ~0.5 ms of CPU on each call (preparing the request, urllib3's pool, the
response object), twice what the call costs: the agents and the oracle make tens of calls a
second each. For a plain `http://` endpoint with no proxy in between (a node on the same host
or network, a devnet) the post goes through `http.client` directly; any other endpoint stays
with `requests` (see `chain.rpc`).

Failures read as they do through `requests`, so that callers' retries and words are the same: a
refused or dropped connection raises `requests.ConnectionError`, a timeout `requests.Timeout`,
an HTTP error status `requests.HTTPError` with the response.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
from urllib.parse import urlsplit

import requests


class _Connection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        # http.client sends a request's headers and its body in two writes: without this,
        # Nagle's algorithm may hold the body back until the node's delayed ACK of the headers
        # (tens of milliseconds on a real network). urllib3, under requests, sets it too.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class KeepAlivePoster:
    """Posts bodies to one `http://` URL; thread-safe (a connection per thread)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url}: only plain http:// URLs are posted directly")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/"
        if parts.query:
            self.path += "?" + parts.query
        self.timeout_s = timeout_s
        self._local = threading.local()

    def post(self, body: bytes, headers: dict[str, str]) -> bytes:
        """The response body of a POST; raises as `requests` would (see the module's doc)."""
        conn = self._connection()
        reused = conn.sock is not None
        try:
            try:
                status, reason, data = self._exchange(conn, body, headers)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The node closed the idle connection as we sent: once more, on a fresh one
                # (every JSON-RPC call here is safe to repeat; a resent transaction is "known").
                conn.close()
                status, reason, data = self._exchange(conn, body, headers)
        except TimeoutError as exc:
            conn.close()
            raise requests.Timeout(f"{self.url}: no answer within {self.timeout_s:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise requests.ConnectionError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if status >= 400:
            response = requests.Response()
            response.status_code = status
            response.reason = reason
            response.url = self.url
            response._content = data
            raise requests.HTTPError(f"{status} {reason} for url: {self.url}", response=response)
        return data

    def _exchange(
        self, conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        conn.request("POST", self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            conn.close()
        return resp.status, resp.reason, data

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(self.host, self.port, timeout=self.timeout_s)
            self._local.conn = conn
        elif conn.sock is not None and _dropped(conn.sock):
            conn.close()  # reconnects at the next request
        return conn


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle connection was closed by the peer: an idle socket that reads as ready
    has an end of file (or stray bytes) waiting, either way no good for the next request."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)
