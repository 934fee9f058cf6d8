"""The agent's transactions: provider steps in ``providerBatch`` chunks, refusals, and expiries.

Sent without waiting for their receipts: a round that waited for one would see the next block's
placements only a block later, and send their ACCEPTs a block late. Each transaction stays in
flight until a later round (``mined``), once the chain has a newer head than the one it was
sent at, finds its receipt; the jobs it carries are ``busy`` meanwhile, and the service decides
nothing about them, so no step goes out twice.

Never stalled: a transaction the node no longer knows (a reorg or a restart dropped it) or that
is not mined within ``receipt_timeout_s`` (the market's sender) is given up, and its jobs are
judged again from the chain by the next round; it is sent again every ``REBROADCAST_S`` while it
waits. A send that fails, a transaction given up, or a receipt of a failed transaction puts the
nonce in doubt: it is re-read from the node before the next send (and before each one until a
send goes through), since a transaction that timed out may still sit in the node's pool, or be
dropped from it later, and every later one would wait behind the gap. A send that fails, other
than a refusal by the contract, ends the round's sending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from web3.types import TxReceipt

from metascheduler.chain import ChainError, Market
from metascheduler.chain.errors import RevertError, RpcUnavailable
from metascheduler.chain.sender import Pending
from metascheduler.chain.types import ProviderAction, ProviderStep, SkippedItem

log = logging.getLogger("metascheduler.agent")

#: Steps per providerBatch transaction (gas grows linearly; keep well under a block).
MAX_STEPS_PER_TX = 100
#: Seconds between two broadcasts of a transaction that is not mined (the same signed bytes:
#: safe to send again, and a node that dropped it from its pool gets it back).
REBROADCAST_S = 10.0


@dataclass
class InFlight:
    """One transaction sent and not yet seen mined: a ``providerBatch`` (``steps``), a refusal
    (``reason``), or an expiry (neither)."""

    pending: Pending
    job_ids: tuple[int, ...]
    #: The head's number when it was sent: it cannot be mined at or below it.
    head: int
    steps: Sequence[ProviderStep] = ()
    reason: str | None = None
    broadcast_at: float = 0.0


@dataclass(frozen=True)
class Mined:
    """A transaction of the agent's mined: what it carried, its receipt, and the items the
    contract skipped."""

    sent: InFlight
    receipt: TxReceipt
    skipped: list[SkippedItem]

    @property
    def steps(self) -> Sequence[ProviderStep]:
        return self.sent.steps

    @property
    def done(self) -> list[ProviderStep]:
        """The steps the contract carried out."""
        skipped = {s.position for s in self.skipped}
        return [s for k, s in enumerate(self.sent.steps) if k not in skipped]


class Outbox:
    def __init__(self, market: Market) -> None:
        self.market = market
        self.sender = market.sender_or_fail()
        self._may_send = True
        self._nonce_suspect = True
        self._in_flight: list[InFlight] = []

    def new_round(self) -> None:
        self._may_send = True

    def nonce_in_doubt(self) -> None:
        """Transactions of blocks a reorg replaced may be gone: the next nonce is the node's."""
        self._nonce_suspect = True

    def busy(self) -> set[int]:
        """The jobs a transaction in flight carries a step, refusal or expiry of."""
        return {j for sent in self._in_flight for j in sent.job_ids}

    # ------------------------------------------------------------------ sending

    def steps(self, steps: Sequence[ProviderStep], head: int) -> None:
        """Sends the steps in chunks. A COMPLETE commits to its step's result digest."""
        for i in range(0, len(steps), MAX_STEPS_PER_TX):
            chunk = steps[i : i + MAX_STEPS_PER_TX]
            what = f"reporting {len(chunk)} job steps"
            if not self._can_send(what):
                return
            try:
                pending = self.market.send_provider_batch(chunk)
            except ChainError as exc:
                self._failed(what, exc)
                continue
            self._sent(InFlight(pending, tuple(s.job_id for s in chunk), head, steps=chunk))

    def refuse(self, job_id: int, reason: str, head: int) -> bool:
        """Whether the refusal was sent."""
        what = f"refusing job {job_id}"
        if not self._can_send(what):
            return False
        try:
            pending = self.market.send_refuse_job(job_id, reason)
        except ChainError as exc:
            self._failed(what, exc)
            return False
        self._sent(InFlight(pending, (job_id,), head, reason=reason))
        return True

    def expire(self, job_ids: Sequence[int], head: int) -> bool:
        """Whether the expiry was sent."""
        what = f"expiring jobs {list(job_ids)}"
        if not job_ids or not self._can_send(what):
            return False
        try:
            pending = self.market.send_expire_jobs(job_ids)
        except ChainError as exc:
            self._failed(what, exc)
            return False
        self._sent(InFlight(pending, tuple(job_ids), head))
        return True

    def _sent(self, sent: InFlight) -> None:
        self._nonce_suspect = False
        sent.broadcast_at = time.monotonic()
        self._in_flight.append(sent)

    # ------------------------------------------------------------------ receipts

    def mined(self, head: int) -> tuple[list[Mined], list[InFlight]]:
        """The transactions in flight seen mined (in the order sent), and those given up (their
        jobs are judged again from the chain). Looks for the receipts of those sent below
        ``head`` (a block came since), and of those that waited long."""
        mined: list[Mined] = []
        given_up: list[InFlight] = []
        waiting: list[InFlight] = []
        for sent in self._in_flight:
            if sent.head >= head and not self._overdue(sent):
                waiting.append(sent)  # no block since it was sent
                continue
            done, failed = self._look(sent)
            if done is not None:
                mined.append(done)
            elif failed or not self._still_waiting(sent):
                given_up.append(sent)
            else:
                waiting.append(sent)
        self._in_flight = waiting
        return mined, given_up

    def mined_at_once(self, within_s: float) -> tuple[list[Mined], list[InFlight]]:
        """As ``mined``, right after sending to a chain that may mine each transaction as it
        comes (a devnet): its receipts are looked for until ``within_s`` passed (such a node
        mines in the background, a few milliseconds after it took the transaction)."""
        deadline = time.monotonic() + within_s
        delay = 0.005
        mined: list[Mined] = []
        given_up: list[InFlight] = []
        while True:
            waiting: list[InFlight] = []
            for sent in self._in_flight:
                done, failed = self._look(sent)
                if done is not None:
                    mined.append(done)
                else:
                    (given_up if failed else waiting).append(sent)
            self._in_flight = waiting
            if not waiting or time.monotonic() + delay > deadline:
                return mined, given_up
            time.sleep(delay)
            delay *= 2

    def _look(self, sent: InFlight) -> tuple[Mined | None, bool]:
        """The transaction as mined, or None; and whether it failed on chain."""
        try:
            receipt = self.sender.receipt(sent.pending)
        except RpcUnavailable:
            raise  # the round fails; what is in flight is looked for again
        except ChainError as exc:
            # Mined but failed (a revert, decoded): the next round reads what the chain made
            # of its jobs.
            log.error("%s failed on chain (re-read next round): %s", sent.pending.what, exc)
            return None, True
        if receipt is None:
            return None, False
        done = Mined(sent, receipt, self.market.skipped(receipt))
        self._log(done)
        return done, False

    def _overdue(self, sent: InFlight) -> bool:
        return time.monotonic() - sent.broadcast_at > min(
            REBROADCAST_S, self.sender.receipt_timeout_s
        )

    def _still_waiting(self, sent: InFlight) -> bool:
        """Whether a transaction not mined yet is still worth waiting for; sends it again when
        it waited long."""
        p = sent.pending
        if not self.sender.known(p):
            self._nonce_suspect = True
            log.warning("%s: the node dropped it (a reorg or a restart); judged again", p.what)
            return False
        now = time.monotonic()
        if now - p.sent_at > self.sender.receipt_timeout_s:
            self._nonce_suspect = True
            log.error(
                "%s: transaction %s not mined after %.0f s (check the node and the fees); "
                "judged again",
                p.what,
                p.tx_hash.hex(),
                self.sender.receipt_timeout_s,
            )
            return False
        if now - sent.broadcast_at > REBROADCAST_S:
            try:
                self.sender.broadcast(p)
            except ChainError as exc:
                log.warning("%s: could not send it again: %s", p.what, exc)
            sent.broadcast_at = now
        return True

    def _log(self, done: Mined) -> None:
        steps = done.sent.steps
        for item in done.skipped:
            what = steps[item.position].action.name if steps else "expiry"
            log.warning("%s of job %d skipped by the contract: %s", what, item.job_id, item.error)
        if done.sent.reason is not None:
            log.info("job %d refused: %s", done.sent.job_ids[0], done.sent.reason)
        for step in done.done:
            extra = (
                f" with exit code {step.exit_code}"
                if step.action is ProviderAction.COMPLETE
                else ""
            )
            log.info("job %d: reported %s%s", step.job_id, step.action.name, extra)

    # ------------------------------------------------------------------ failures

    def _failed(self, what: str, exc: ChainError) -> None:
        self._nonce_suspect = True
        if isinstance(exc, RevertError):
            log.error("%s was refused by the contract (re-read next round): %s", what, exc)
        else:
            log.error("%s failed; the rest of this round's sending waits: %s", what, exc)
            self._may_send = False

    def _can_send(self, what: str) -> bool:
        """Whether this round may still send; re-reads the nonce first when it is in doubt."""
        if self._may_send and self._nonce_suspect:
            try:
                nonce = self.sender.resync_nonce()
            except ChainError as exc:
                log.warning("could not re-read the nonce (next round retries): %s", exc)
                self._may_send = False
            else:
                log.debug("nonce re-read from the node: next is %d", nonce)
        if not self._may_send:
            log.info("%s: left for the next round (an earlier send of this round failed)", what)
        return self._may_send
