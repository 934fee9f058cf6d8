"""Accepting a provider's signed heartbeat: who may send one, and what each rejection means.

`metascheduler.heartbeat.verify` is the authority on a heartbeat's validity; this module adds
what verify cannot know (is the signer a provider of this market?) and gives each rejection an
HTTP status, so an agent can tell a bug (400), a wrong key (401), an unknown provider (403) and
a message that is stale, replayed or for another market or chain (409) apart. A banned provider
is still heard: its running jobs go on, and its heartbeats are the evidence they are delivered.
"""

from __future__ import annotations

from dataclasses import asdict

from eth_utils import to_checksum_address
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from metascheduler.chain.types import ProviderStatus
from metascheduler.heartbeat import MAX_SKEW_S, Heartbeat, HeartbeatError, verify
from metascheduler.store.models import Provider

from .schemas import HeartbeatBody


class Rejected(Exception):
    """A refused heartbeat: `status` is the HTTP code, `reason` a metrics label, `detail` words."""

    def __init__(self, status: int, reason: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def malformed(detail: str) -> Rejected:
    return Rejected(400, "malformed", f"malformed heartbeat: {detail}")


def accept(
    s: Session, body: HeartbeatBody, *, market: str, chain_id: int, now: float
) -> tuple[Heartbeat, int]:
    """Verifies `body` (already in shape: strict JSON types, so its dump is exactly what was
    signed) and records it as the provider's latest heartbeat; returns it and the time it was
    recorded. Raises Rejected. Commits on success."""
    hb = body.heartbeat
    if hb.market.lower() != market.lower() or hb.chain_id != chain_id:
        # A heartbeat signed for another deployment is a replay across deployments: 409.
        raise Rejected(
            409,
            "wrong_market",
            f"heartbeat is for market {hb.market} on chain {hb.chain_id}, but this API serves "
            f"market {market} on chain {chain_id}: check the agent's market_address and rpc_url",
        )
    address = to_checksum_address(hb.provider)
    provider = s.get(Provider, address)
    if provider is None or provider.status == int(ProviderStatus.NONE):
        raise Rejected(
            403,
            "unknown_provider",
            f"{address} is not a provider of market {market} (no ProviderRegistered event "
            "ingested): register it on chain first, or wait for the store to ingest it",
        )
    # A banned provider is still heard: its running jobs run on and are billed, and its
    # heartbeats are the evidence that it is delivering them (the oracle bills a silent
    # provider's jobs up to its last heartbeat).
    last_seq = provider.last_heartbeat_seq
    try:
        verified = verify(
            body.model_dump(), market=market, chain_id=chain_id, last_seq=last_seq, now=now
        )
    except HeartbeatError as exc:
        # verify checks market, timestamp, seq, then signature: the same predicates, in the same
        # order, tell which one failed.
        if abs(now - hb.timestamp) > MAX_SKEW_S:
            raise Rejected(409, "stale_timestamp", str(exc)) from None
        if last_seq is not None and hb.seq <= last_seq:
            raise Rejected(409, "replayed_seq", str(exc)) from None
        raise Rejected(401, "bad_signature", f"{exc}: sign with the provider's own key") from None
    received = int(now)
    # Conditional on the seq still being older, so two racing copies cannot both be accepted.
    done = s.execute(
        update(Provider)
        .where(
            Provider.address == address,
            or_(Provider.last_heartbeat_seq.is_(None), Provider.last_heartbeat_seq < verified.seq),
        )
        .values(
            last_heartbeat_at=received,
            last_heartbeat_seq=verified.seq,
            heartbeat=asdict(verified),
        )
    )
    if getattr(done, "rowcount", 1) != 1:
        s.rollback()
        raise Rejected(
            409, "replayed_seq", f"heartbeat seq {verified.seq} was overtaken by a newer one"
        )
    s.commit()
    return verified, received
