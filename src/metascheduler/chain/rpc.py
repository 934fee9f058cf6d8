"""Connecting to a JSON-RPC endpoint, retrying transient failures with backoff, and calls that
skip web3's result formatters where they would be the slow part."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from web3 import HTTPProvider, Web3
from web3._utils.http_session_manager import HTTPSessionManager
from web3.exceptions import Web3RPCError
from web3.types import RPCEndpoint, RPCResponse

from metascheduler.chain.errors import RpcUnavailable
from metascheduler.chain.keepalive import KeepAlivePoster

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Failures worth retrying: the endpoint is down, slow, or overloaded.
TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    ConnectionError,
    TimeoutError,
)


def connect(rpc_url: str, timeout_s: float = 10.0) -> Web3:
    """A Web3 on an HTTP endpoint, with no retries of its own (ours know the context)."""
    provider = NodeNeutralProvider(
        rpc_url,
        request_kwargs={"timeout": timeout_s},
        exception_retry_configuration=None,
    )
    return Web3(provider)


#: HTTP 429 answers retried in the provider itself before the call fails in words; the waits
#: double from RATE_LIMIT_FIRST_DELAY_S (with jitter, so that services sharing an endpoint do
#: not come back in step): about half a minute in all.
RATE_LIMIT_TRIES = 8
RATE_LIMIT_FIRST_DELAY_S = 0.1


class NodeNeutralProvider(HTTPProvider):
    """web3's HTTP provider, with the answers in which EVM nodes differ put in one shape, so
    that nothing above this layer needs to know which node it talks to.

    Public endpoints differ from a devnet too: an HTTP 429 is waited out here (every call
    passes through, including those with no retry of their own), and a batch the endpoint
    refused once is sent as single calls from then on."""

    batches_refused = False

    def __init__(self, endpoint_uri: str, **kwargs: Any) -> None:
        super().__init__(endpoint_uri, **kwargs)
        timeout_s = float(kwargs.get("request_kwargs", {}).get("timeout", 10.0))
        self._request_session_manager = _SessionsWithEnvironmentReadOnce(endpoint_uri, timeout_s)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return _rate_limited(
            self.endpoint_uri, lambda: super(NodeNeutralProvider, self).make_request(method, params)
        )

    def make_batch_request(
        self, batch_requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        if not self.batches_refused:
            response = _rate_limited(
                self.endpoint_uri,
                lambda: super(NodeNeutralProvider, self).make_batch_request(batch_requests),
            )
            if isinstance(response, list):
                return response
            # One error object for the whole batch: the endpoint does not take batches.
            log.info(
                "RPC %s refused a JSON-RPC batch (%s); sending single calls from now on",
                self.endpoint_uri,
                response.get("error"),
            )
            self.batches_refused = True
        return [self.make_request(method, params) for method, params in batch_requests]

    @staticmethod
    def decode_rpc_response(raw_response: bytes) -> RPCResponse:
        response: Any = HTTPProvider.decode_rpc_response(raw_response)
        if isinstance(response, list):
            return [_one_shape(r) for r in response]  # type: ignore[return-value]
        return _one_shape(response)


class _SessionsWithEnvironmentReadOnce(HTTPSessionManager):
    """web3's sessions (one per thread), with what ``requests`` takes from the environment
    (proxies, CA bundle, ``.netrc``) read once, here, not at every call: that took a third of
    a short call's CPU (0.5 ms of 1.4), and the agent polls the head ten times a second.

    A plain ``http://`` endpoint that none of that applies to is posted to without
    ``requests`` at all (`chain.keepalive`): half the CPU of a call again."""

    def __init__(self, endpoint_uri: str, timeout_s: float) -> None:
        super().__init__()
        self._proxies = requests.utils.get_environ_proxies(endpoint_uri)
        self._verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self._auth = requests.utils.get_netrc_auth(endpoint_uri)
        parts = urlsplit(endpoint_uri)
        direct = parts.scheme == "http" and not (self._proxies or self._auth or parts.username)
        self._direct = KeepAlivePoster(endpoint_uri, timeout_s) if direct else None

    def make_post_request(self, endpoint_uri: Any, data: Any, **kwargs: Any) -> bytes:
        if self._direct is None or not isinstance(data, bytes):
            return super().make_post_request(endpoint_uri, data, **kwargs)
        return self._direct.post(data, dict(kwargs.get("headers") or {}))

    def cache_and_return_session(
        self, endpoint_uri: Any, session: Any = None, request_timeout: float | None = None
    ) -> requests.Session:
        got: requests.Session = super().cache_and_return_session(
            endpoint_uri, session, request_timeout
        )
        if got.trust_env:  # a session just made
            got.trust_env = False
            got.proxies.update(self._proxies)
            if self._verify:
                got.verify = self._verify
            if self._auth:
                got.auth = self._auth
        return got


def _rate_limited(url: Any, send: Callable[[], T]) -> T:
    """`send()`, again after a growing, jittered wait while the endpoint answers HTTP 429."""
    delay = RATE_LIMIT_FIRST_DELAY_S
    for attempt in range(1, RATE_LIMIT_TRIES + 1):
        try:
            return send()
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status != 429:
                raise
            if attempt == RATE_LIMIT_TRIES:
                raise RpcUnavailable(
                    f"the RPC endpoint {url} still answers 429 Too Many Requests after "
                    f"{attempt} tries: lower the request rate (poll intervals), or use an "
                    "endpoint with a higher rate limit"
                ) from exc
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay *= 2
    raise AssertionError("unreachable")


def _one_shape(response: Any) -> Any:
    """A call or gas estimate that reverted carries the revert data as the error's `data`, a hex
    string (anvil, geth). Hardhat Network nests it one level down, `{"message": ..., "data":
    "0x..."}`, which web3 does not decode: lift it up."""
    error = response.get("error") if isinstance(response, dict) else None
    if isinstance(error, dict) and isinstance(error.get("data"), dict):
        data = error["data"].get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return {**response, "error": {**error, "data": data}}
    return response


#: What endpoints say when an eth_getLogs asks for too many blocks or too many logs (geth,
#: Infura, Alchemy, QuickNode, public nodes), or takes too long for the same reason.
_TOO_MUCH = (
    "block range",
    "range too large",
    "query returned more than",
    "limit exceeded",
    "too many",
    "limit",
    "exceed",
    "range",
    "timeout",
    "timed out",
    "response size",
)
#: JSON-RPC "limit exceeded", the code public endpoints give such refusals.
_LIMIT_EXCEEDED = -32005


def is_too_much(exc: Web3RPCError) -> bool:
    """Whether the node refused a read for its size (a range to split), not for its content."""
    error = (exc.rpc_response or {}).get("error")
    if isinstance(error, dict) and error.get("code") == _LIMIT_EXCEEDED:
        return True
    msg = str(exc).lower()
    return str(_LIMIT_EXCEEDED) in msg or any(w in msg for w in _TOO_MUCH)


def in_ranges(read: Callable[[int, int], list[T]], start: int, end: int, size: int) -> list[T]:
    """`read(lo, hi)` over start..end in ranges of `size` blocks, a range halved each time the
    node refuses it as too much (see is_too_much)."""
    return [item for part in walk_ranges(read, start, end, size) for item in part]


def walk_ranges(
    read: Callable[[int, int], list[T]],
    start: int,
    end: int,
    size: int,
    *,
    newest_first: bool = False,
) -> Iterator[list[T]]:
    """Each `read(lo, hi)` over start..end, in ranges of `size` blocks, a range halved each time
    the node refuses it as too much (see is_too_much). `newest_first` walks down from `end`: a
    search for something recent stops at its find instead of reading the whole history."""
    while start <= end:
        lo, hi = (
            (max(start, end - size + 1), end)
            if newest_first
            else (start, min(end, start + size - 1))
        )
        try:
            part = read(lo, hi)
        except Web3RPCError as exc:
            if hi > lo and is_too_much(exc):
                size = max(1, (hi - lo + 1) // 2)
                continue
            raise
        yield part
        if newest_first:
            end = lo - 1
        else:
            start = hi + 1


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status == 429 or status >= 500
    return isinstance(exc, Web3RPCError) and "timeout" in str(exc).lower()


def retrying(
    what: str,
    fn: Callable[[], T],
    *,
    deadline_s: float = 300.0,
    first_delay_s: float = 0.25,
    max_delay_s: float = 8.0,
    rpc_url: str = "",
) -> T:
    """Calls `fn` until it succeeds, retrying transient RPC failures with exponential backoff.

    Logs once per failure so an operator sees that the RPC is down and that we are waiting;
    raises RpcUnavailable when `deadline_s` has passed.
    """
    start = time.monotonic()
    delay = first_delay_s
    attempt = 0
    while True:
        try:
            result = fn()
            if attempt:
                log.info(
                    "RPC %s answers again; %s resumed after %d retries", rpc_url, what, attempt
                )
            return result
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            waited = time.monotonic() - start
            if waited + delay > deadline_s:
                raise RpcUnavailable(
                    f"{what}: the RPC endpoint {rpc_url or '(configured)'} did not answer for "
                    f"{waited:.0f} s ({type(exc).__name__}): check that the node is up and the URL "
                    "is right"
                ) from exc
            log.warning(
                "%s: RPC %s unreachable (%s); retry %d in %.1f s",
                what,
                rpc_url,
                type(exc).__name__,
                attempt,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)


# ---------------------------------------------------------------------------------------------
# JSON-RPC without web3's result formatters (they cost ~0.3 ms a log or block on hot paths)


def raw_call(w3: Web3, method: str, params: list[Any]) -> Any:
    """One JSON-RPC call without web3's formatters; a node error raises Web3RPCError (as web3
    does), so callers' handling of refused ranges is unchanged."""
    resp = w3.provider.make_request(RPCEndpoint(method), params)
    if resp.get("error") is not None:
        err = resp["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise Web3RPCError(f"{method} failed: {msg}", rpc_response=resp)
    return resp.get("result")


def raw_batch(w3: Web3, calls: Sequence[tuple[str, list[Any]]]) -> list[Any] | None:
    """The results of `calls` sent as one JSON-RPC batch, unformatted; None when the endpoint
    does not batch or any call failed, so that the caller reads them again its slower way and
    that way's errors are the ones a user sees."""
    batch = getattr(w3.provider, "make_batch_request", None)
    if batch is None:
        return None
    try:
        resp: Any = batch([(RPCEndpoint(method), params) for method, params in calls])
    except NotImplementedError:
        return None
    if not isinstance(resp, list) or len(resp) != len(calls):
        return None
    if any(r.get("error") is not None or not r.get("result") for r in resp):
        return None
    return [r["result"] for r in resp]


#: Contract calls (eth_call) per JSON-RPC batch: large enough to matter, small enough for any
#: node's limits.
CALLS_PER_BATCH = 100

#: Block headers per JSON-RPC batch: a range of logs may span hundreds of blocks.
BLOCKS_PER_BATCH = 100


def _header(b: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": int(b["number"], 16),
        "hash": str(b["hash"]).lower(),
        "parentHash": str(b["parentHash"]).lower(),
        "timestamp": int(b["timestamp"], 16),
    }


def get_block(w3: Web3, number: int) -> dict[str, Any]:
    """The block's number, hash, parentHash (0x lowercase) and timestamp (int)."""
    b = raw_call(w3, "eth_getBlockByNumber", [hex(number), False])
    if b is None:
        raise Web3RPCError(f"eth_getBlockByNumber: block {number} not found (beyond the head?)")
    return _header(b)


def get_blocks(w3: Web3, numbers: Sequence[int]) -> dict[int, dict[str, Any]]:
    """`get_block` of each number, in JSON-RPC batches of `BLOCKS_PER_BATCH` (one round trip
    where a backlog's logs span a dozen blocks). A batch the endpoint refuses, or with any
    item missing or in error, is read again one call at a time, so errors read as
    `get_block`'s do."""
    out: dict[int, dict[str, Any]] = {}
    numbers = list(numbers)
    for i in range(0, len(numbers), BLOCKS_PER_BATCH):
        part = numbers[i : i + BLOCKS_PER_BATCH]
        calls = [("eth_getBlockByNumber", [hex(n), False]) for n in part]
        results = raw_batch(w3, calls) if len(part) > 1 else None
        if results is not None:
            out.update((n, _header(b)) for n, b in zip(part, results, strict=True))
        else:
            out.update((n, get_block(w3, n)) for n in part)
    return out
