"""The oracle's memory of its own transactions (the `oracle_actions` table).

An action is written as an intent before its transaction is sent and updated once sent, mined,
reverted or dropped. Jobs of an action are "busy" (not acted on again) while it is unsettled,
and after it is mined until the store has ingested its block: otherwise the store, still showing
the job PENDING, would make the oracle place it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from hexbytes import HexBytes
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from web3.exceptions import TransactionNotFound
from web3.types import TxReceipt

from metascheduler.chain import Market
from metascheduler.chain.rpc import raw_call, retrying
from metascheduler.chain.sender import Pending
from metascheduler.chain.types import SkippedItem
from metascheduler.store.models import OracleAction

log = logging.getLogger(__name__)

#: Seconds an unmined transaction whose nonce is next may wait before it is rebroadcast.
NEXT_IN_LINE_GRACE_S = 3.0
#: How long a sent transaction whose nonce the node counts as used may still have no receipt
#: before it counts as replaced: public endpoints answer a receipt null for a while after the
#: block that holds it (their nodes behind one URL are not all at the same height).
RECEIPT_LAG_S = 30.0


class ActionLog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        market: Market,
        *,
        stuck_s: float,
        rpc_deadline_s: float = 30.0,
    ):
        self.rpc_deadline_s = rpc_deadline_s
        self.sessions = sessions
        self.market = market
        self.stuck_s = stuck_s
        self._pending: dict[int, Pending] = {}  # action id -> signed tx, to rebroadcast
        self._url = str(getattr(market.w3.provider, "endpoint_uri", ""))
        self._skip_topic = market.events.topic("BatchItemSkipped")
        self._settled_at_block = -1

    # ------------------------------------------------------------------ lifecycle

    def recover(self) -> None:
        """At start-up: intents that never got a hash were not sent (or died mid-send), and the
        contract refuses a second transition anyway, so they are released."""
        with self.sessions.begin() as s:
            stale = list(s.scalars(select(OracleAction).where(OracleAction.state == "intent")))
            for a in stale:
                a.state = "dropped"
            n = len(stale)
        if n:
            log.warning("released %d actions left unsent by a previous run", n)

    def intend(self, kind: str, job_ids: Sequence[int], providers: Sequence[str] | None) -> int:
        return self.intend_many(kind, [(job_ids, providers)])[0]

    def intend_many(
        self, kind: str, batches: Sequence[tuple[Sequence[int], Sequence[str] | None]]
    ) -> list[int]:
        """Records several intents in one transaction (one commit per tick, not per batch)."""
        with self.sessions.begin() as s:
            rows = [
                OracleAction(
                    kind=kind,
                    job_ids=list(job_ids),
                    providers=list(providers) if providers is not None else None,
                    state="intent",
                    sent_at=time.time(),
                )
                for job_ids, providers in batches
            ]
            s.add_all(rows)
            s.flush()
            return [a.id for a in rows]

    def mark_sent_many(self, sent: Sequence[tuple[int, Pending]]) -> None:
        if not sent:
            return
        with self.sessions.begin() as s:
            for action_id, pending in sent:
                self._pending[action_id] = pending
                s.execute(
                    update(OracleAction)
                    .where(OracleAction.id == action_id)
                    .values(state="sent", tx_hash=pending.tx_hash.to_0x_hex(), nonce=pending.nonce)
                )

    def mark_unsent_many(self, action_ids: Sequence[int]) -> None:
        if not action_ids:
            return
        with self.sessions.begin() as s:
            s.execute(
                update(OracleAction)
                .where(OracleAction.id.in_(list(action_ids)))
                .values(state="dropped")
            )

    def mark_unsent(self, action_id: int) -> None:
        with self.sessions.begin() as s:
            s.execute(
                update(OracleAction).where(OracleAction.id == action_id).values(state="dropped")
            )

    def mark_receipt(self, action_id: int, receipt: TxReceipt) -> list[SkippedItem]:
        """Records a mined transaction; returns the items the contract skipped."""
        self._pending.pop(action_id, None)
        ok = receipt["status"] == 1
        skipped = self._skipped(receipt) if ok else []
        with self.sessions.begin() as s:
            s.execute(
                update(OracleAction)
                .where(OracleAction.id == action_id)
                .values(
                    state="mined" if ok else "reverted",
                    tx_hash=receipt["transactionHash"].to_0x_hex(),
                    mined_block=int(receipt["blockNumber"]),
                    gas_used=int(receipt["gasUsed"]),
                    skipped=[list(x) for x in skipped] or None,
                )
            )
        return skipped

    def _receipt(self, tx_hash: str) -> TxReceipt | None:
        """The receipt, or None while unmined. Read raw: a placement's receipt holds one log per
        job, and web3's formatting of hundreds of logs costs more than the read. Only a receipt
        with a skipped item (rare) is read again, formatted, to decode it."""
        raw = raw_call(self.market.w3, "eth_getTransactionReceipt", [tx_hash])
        if raw is None:
            return None
        if any(lg["topics"] and lg["topics"][0].lower() == self._skip_topic for lg in raw["logs"]):
            try:
                return self.market.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                return None  # reorganised away between the two reads
        return cast(
            TxReceipt,
            {
                "status": int(raw["status"], 16),
                "blockNumber": int(raw["blockNumber"], 16),
                "gasUsed": int(raw["gasUsed"], 16),
                "transactionHash": HexBytes(raw["transactionHash"]),
                "logs": [],  # no skipped item among them
            },
        )

    def _skipped(self, receipt: TxReceipt) -> list[SkippedItem]:
        """Market.skipped, decoding only BatchItemSkipped logs (a receipt of a big batch holds
        one JobPlaced per item, not worth decoding here)."""
        topic = HexBytes(self._skip_topic)
        out = []
        for lg in receipt["logs"]:
            if lg["topics"] and HexBytes(lg["topics"][0]) == topic:
                ev = self.market.events.decode(lg)
                if ev is not None:
                    err = self.market.decoder.decode(ev.args["error"])
                    out.append(SkippedItem(int(ev.args["index"]), int(ev.args["jobId"]), str(err)))
        return out

    # ------------------------------------------------------------------ reads

    def busy(self, cursor_block: int, kinds: Sequence[str]) -> dict[int, str | None]:
        """Jobs an unsettled or not-yet-ingested action of `kinds` covers: job id -> provider."""
        with self.sessions() as s:
            rows = s.scalars(
                select(OracleAction).where(
                    OracleAction.kind.in_(list(kinds)),
                    or_(
                        OracleAction.state.in_(("intent", "sent")),
                        (OracleAction.state == "mined") & (OracleAction.mined_block > cursor_block),
                    ),
                )
            ).all()
        out: dict[int, str | None] = {}
        for a in rows:
            provs = a.providers or [None] * len(a.job_ids)
            for jid, prov in zip(a.job_ids, provs, strict=False):
                out[int(jid)] = prov
        return out

    def unsettled(self) -> list[OracleAction]:
        with self.sessions() as s:
            return list(
                s.scalars(
                    select(OracleAction)
                    .where(OracleAction.state == "sent")
                    .order_by(OracleAction.nonce)
                )
            )

    # ------------------------------------------------------------------ settling

    def settle(self, on_skipped: Callable[[OracleAction, list[SkippedItem]], Any]) -> int:
        """Checks the receipts of sent transactions; returns how many are still unmined."""
        open_ = self.unsettled()
        if not open_:
            return 0
        w3 = self.market.w3
        head = int(
            retrying(
                "reading the head block",
                lambda: w3.eth.block_number,
                deadline_s=self.rpc_deadline_s,
                rpc_url=self._url,
            )
        )
        stuck = any(time.time() - a.sent_at > self.stuck_s for a in open_)
        if head == self._settled_at_block and not stuck:
            return len(open_)  # no new block: no new receipt
        self._settled_at_block = head
        sender = self.market.sender_or_fail()
        latest_nonce: int | None = None
        still = 0
        for a in open_:
            assert a.tx_hash is not None
            receipt = retrying(
                f"reading the receipt of {a.kind} {a.tx_hash}",
                lambda h=a.tx_hash: self._receipt(h),  # type: ignore[misc]
                deadline_s=self.rpc_deadline_s,
                rpc_url=self._url,
            )
            if receipt is not None:
                skipped = self.mark_receipt(a.id, receipt)
                if receipt["status"] != 1:
                    log.error(
                        "%s tx=%s jobs=%d reverted in block %d: the jobs are free again",
                        a.kind,
                        a.tx_hash,
                        len(a.job_ids),
                        receipt["blockNumber"],
                    )
                elif skipped:
                    on_skipped(a, skipped)
                continue
            if latest_nonce is None:
                latest_nonce = int(
                    retrying(
                        "reading the oracle's nonce",
                        lambda: w3.eth.get_transaction_count(sender.address, "latest"),
                        deadline_s=self.rpc_deadline_s,
                        rpc_url=self._url,
                    )
                )
            if a.nonce is not None and a.nonce < latest_nonce:
                # Mined between the two reads? Then the receipt is there now.
                try:
                    receipt = w3.eth.get_transaction_receipt(HexBytes(a.tx_hash))
                except TransactionNotFound:
                    receipt = None
                if receipt is not None:
                    self.mark_receipt(a.id, receipt)
                    continue
                if time.time() - a.sent_at < RECEIPT_LAG_S:
                    still += 1  # a public endpoint's receipts can lag its nonces: ask again
                    continue
                # Its nonce was used by another transaction: this one will never be mined.
                log.warning(
                    "%s tx=%s nonce=%s replaced: jobs free again", a.kind, a.tx_hash, a.nonce
                )
                self.mark_unsent(a.id)
                continue
            age = time.time() - a.sent_at
            # Next in line (its nonce is the account's next) yet a new block came without it:
            # the node may have dropped it. The same signed bytes are safe to send again.
            next_in_line = a.nonce == latest_nonce and age > NEXT_IN_LINE_GRACE_S
            if age > self.stuck_s or (next_in_line and a.id in self._pending):
                p = self._pending.get(a.id)
                if p is not None:
                    log.warning(
                        "%s tx=%s unmined after %.0f s: rebroadcasting", a.kind, a.tx_hash, age
                    )
                    try:
                        sender.broadcast(p)
                    except Exception as exc:
                        log.warning("rebroadcast of %s failed: %s", a.tx_hash, exc)
                    p.sent_at = time.monotonic()
                    with self.sessions.begin() as s:
                        s.execute(
                            update(OracleAction)
                            .where(OracleAction.id == a.id)
                            .values(sent_at=time.time())
                        )
                else:
                    # Sent by an earlier run and gone from the node's pool: give the jobs back.
                    log.warning(
                        "%s tx=%s nonce=%s not found after %.0f s: treating as dropped",
                        a.kind,
                        a.tx_hash,
                        a.nonce,
                        age,
                    )
                    self.mark_unsent(a.id)
                    sender.resync_nonce()
                    continue
            still += 1
        return still
