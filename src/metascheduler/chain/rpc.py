"""Connecting to a JSON-RPC endpoint, and retrying transient failures with backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from web3 import Web3
from web3.exceptions import Web3RPCError

from metascheduler.chain.errors import RpcUnavailable

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
    provider = Web3.HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": timeout_s},
        exception_retry_configuration=None,
    )
    return Web3(provider)


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
