"""Signed heartbeats to the oracle's API: free capacity and the jobs running and queued.

A heartbeat that cannot be delivered is logged and dropped: the next one carries the news. The
sequence number is strictly increasing across restarts: the last one is persisted in the agent's
state, and it never falls below the Unix time in seconds, so even a lost state file keeps it
moving forward (as long as the agent sends at most one heartbeat per second on average).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import httpx
from eth_account.signers.local import LocalAccount

from metascheduler.agent.backends import Capacity
from metascheduler.heartbeat import Heartbeat, sign

log = logging.getLogger(__name__)

PATH = "/api/heartbeats"


def next_seq(last: int, now: float | None = None) -> int:
    return max(last + 1, int(time.time() if now is None else now))


def build(
    *,
    provider: str,
    market: str,
    chain_id: int,
    seq: int,
    capacity: Capacity,
    running: Iterable[int],
    queued: Iterable[int],
    backend: str,
) -> Heartbeat:
    return Heartbeat(
        provider=provider,
        market=market,
        chain_id=chain_id,
        seq=seq,
        timestamp=int(time.time()),
        free_cpus=max(0, capacity.free_cpus),
        free_gpus=max(0, capacity.free_gpus),
        free_mem_mb=max(0, capacity.free_mem_mb),
        running=sorted(running),
        queued=sorted(queued),
        backend=backend,
    )


def send(api_url: str, hb: Heartbeat, account: LocalAccount, timeout_s: float) -> bool:
    """POSTs the signed heartbeat; True if the API took it. Never raises for network trouble."""
    url = api_url.rstrip("/") + PATH
    body = sign(hb, account)
    try:
        resp = httpx.post(url, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        log.warning(
            "heartbeat %d not delivered: %s unreachable (%s: %s); the agent goes on and tries "
            "again at the next interval",
            hb.seq,
            url,
            type(exc).__name__,
            exc,
        )
        return False
    if resp.status_code >= 300:
        log.warning(
            "heartbeat %d refused by %s: HTTP %d %s",
            hb.seq,
            url,
            resp.status_code,
            resp.text[:500],
        )
        return False
    log.debug("heartbeat %d delivered", hb.seq)
    return True
