"""The agent's transactions of one round: provider steps in ``providerBatch`` chunks, refusals,
and expiries, each awaited for its receipt.

Never stalled: each receipt is awaited ``receipt_timeout_s`` at most (the market's sender); a
send that fails or times out ends the round's sending, and the nonce is re-read from the node
before the next send (and before each one until a send goes through): a transaction that timed
out may still sit in the node's pool, or be dropped from it later, and every later one would
wait behind the gap. A send the contract merely refused does not end the round.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from web3.types import TxReceipt

from metascheduler.chain import ChainError, Market
from metascheduler.chain.errors import RevertError
from metascheduler.chain.types import ProviderAction, ProviderStep, SkippedItem

log = logging.getLogger("metascheduler.agent")

#: Steps per providerBatch transaction (gas grows linearly; keep well under a block).
MAX_STEPS_PER_TX = 100


@dataclass(frozen=True)
class SentBatch:
    """One ``providerBatch`` mined: its steps, its receipt, and the items the contract skipped."""

    steps: Sequence[ProviderStep]
    receipt: TxReceipt
    skipped: list[SkippedItem]

    @property
    def done(self) -> list[ProviderStep]:
        """The steps the contract carried out."""
        skipped = {s.position for s in self.skipped}
        return [s for k, s in enumerate(self.steps) if k not in skipped]


class Outbox:
    def __init__(self, market: Market) -> None:
        self.market = market
        self.sender = market.sender_or_fail()
        self._may_send = True
        self._nonce_suspect = True

    def new_round(self) -> None:
        self._may_send = True

    def nonce_in_doubt(self) -> None:
        """Transactions of blocks a reorg replaced may be gone: the next nonce is the node's."""
        self._nonce_suspect = True

    def steps(self, steps: Sequence[ProviderStep]) -> Iterator[SentBatch]:
        """Sends the steps in chunks; yields each chunk once mined (the caller acts on it before
        the next is sent). A chunk that fails is logged and not yielded. A COMPLETE commits to
        its step's result digest."""
        for i in range(0, len(steps), MAX_STEPS_PER_TX):
            chunk = steps[i : i + MAX_STEPS_PER_TX]
            what = f"reporting {len(chunk)} job steps"
            if not self._can_send(what):
                return
            try:
                receipt = self.market.provider_batch(chunk)
            except ChainError as exc:
                self._failed(what, exc)
                continue
            self._nonce_suspect = False
            batch = SentBatch(chunk, receipt, self.market.skipped(receipt))
            for item in batch.skipped:
                log.warning(
                    "step %s of job %d skipped by the contract: %s",
                    chunk[item.position].action.name,
                    item.job_id,
                    item.error,
                )
            for step in batch.done:
                extra = (
                    f" with exit code {step.exit_code}"
                    if step.action is ProviderAction.COMPLETE
                    else ""
                )
                log.info("job %d: reported %s%s", step.job_id, step.action.name, extra)
            yield batch

    def refuse(self, job_id: int, reason: str) -> bool:
        """Whether the refusal was mined."""
        what = f"refusing job {job_id}"
        if not self._can_send(what):
            return False
        try:
            self.market.refuse_job(job_id, reason)
        except ChainError as exc:
            self._failed(what, exc)
            return False
        self._nonce_suspect = False
        log.info("job %d refused: %s", job_id, reason)
        return True

    def expire(self, job_ids: Sequence[int]) -> list[SkippedItem] | None:
        """The items the contract skipped, or None if the expiry was not mined."""
        what = f"expiring jobs {list(job_ids)}"
        if not job_ids or not self._can_send(what):
            return None
        try:
            receipt = self.market.expire_jobs(job_ids)
        except ChainError as exc:
            self._failed(what, exc)
            return None
        self._nonce_suspect = False
        return self.market.skipped(receipt)

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
