"""The oracle service: three ticks over the chain and the store.

- sync (every `place_interval_s`): ingest new confirmed blocks, settle sent transactions, place
  pending jobs in batches sized to the block gas limit, several transactions in flight.
- ingest (every `ingest_interval_s`): ingestion alone, so the store stays fresh when nothing is
  to be placed.
- keep (every `keep_interval_s`): expire RUNNING jobs past their funding, reclaim placements
  past the contract's timeouts, fail RUNNING jobs of providers whose heartbeats stopped.

Each tick is safe to run late, twice or after a crash: it reads the store (chain facts) and the
oracle's action log (what it sent), never an in-memory plan.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine, func, select, update
from web3 import Web3

from metascheduler import logs
from metascheduler.billing import funded_seconds
from metascheduler.chain import Market, RpcUnavailable, Terms
from metascheduler.chain.errors import ChainError
from metascheduler.chain.gas import (
    PLACE_ITEM_CALLDATA_GAS,
    TX_BASE_GAS,
    calldata_gas,
    place_jobs_exec_gas,
)
from metascheduler.chain.rpc import retrying
from metascheduler.chain.types import JobStatus, Placement, ProviderStatus, SkippedItem
from metascheduler.config import SettingsError
from metascheduler.errors import MetaschedulerError, one_line
from metascheduler.keys import refuse_dev_key_off_devnet
from metascheduler.oracle import calldata
from metascheduler.oracle.actions import ActionLog
from metascheduler.oracle.inputs import Liveness, pending_job, provider_states
from metascheduler.oracle.settings import OracleSettings
from metascheduler.placement import (
    DEFAULT_POLICY,
    PendingJob,
    Policy,
    ProviderState,
    Unplaceable,
    cheapest_prices,
    get_policy,
)
from metascheduler.signals import stop_on_signals
from metascheduler.store import Ingester, make_engine, session_factory, upgrade_to_head
from metascheduler.store import queries as q
from metascheduler.store.models import Block, Job, OracleAction, Provider

log = logging.getLogger("metascheduler.oracle")

#: Unplaceable reasons longer than this are cut (they are for humans, not for parsing).
MAX_UNPLACEABLE_REASON = 500
#: Newly unplaceable jobs logged one by one a tick; a flood of them gets one line for the rest.
MAX_LOGGED_UNPLACEABLE = 20
_FAILED = object()
#: At most this many pending jobs are considered per tick (in the store's `PRIORITY`).
MAX_PENDING_PER_TICK = 20_000
#: A job is placed only if its escrow pays this long a run on the cheapest provider able to run it.
MIN_RUN_S = 60
#: Most placements in one transaction: ~29 kB of calldata per 130, and nodes refuse transactions
#: above 128 kB (geth's pool limit).
MAX_BATCH_ITEMS = 500
#: Batch sizing tries this many transactions per block at most.
MAX_TXS_PER_BLOCK = 64


@dataclass
class _Batch:
    placements: list[Placement] = field(default_factory=list)
    items: list[bytes] = field(default_factory=list)
    providers: set[str] = field(default_factory=set)
    item_calldata_gas: int = 0
    full: bool = False

    def gas(self, extra_item: bytes | None = None, extra_provider: str | None = None) -> int:
        """The exact gas limit of this batch (with one more item, if given)."""
        n = len(self.items) + (extra_item is not None)
        provs = len(self.providers | ({extra_provider} if extra_provider else set()))
        cd = self.item_calldata_gas + (calldata_gas(extra_item) if extra_item else 0)
        return TX_BASE_GAS + calldata_gas(calldata.header(n)) + cd + place_jobs_exec_gas(n, provs)


@dataclass
class TickStats:
    placed: int = 0
    held: int = 0
    unplaceable: int = 0
    txs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def nominal_batch_gas(n: int) -> int:
    """A batch of n placements to two providers, with typical calldata (for sizing only)."""
    header = calldata_gas(calldata.header(n))
    return TX_BASE_GAS + header + n * PLACE_ITEM_CALLDATA_GAS + place_jobs_exec_gas(n, 2)


def size_batches(gas_limit: int, fraction: float) -> tuple[int, int, int]:
    """(k, n, gas): k placement batches a block, of about n jobs and a gas limit of `gas` each,
    so that a whole number of them fills a block of `gas_limit`.

    Blocks are packed by gas *limit*: a block takes the next transaction only if its limit fits
    in the gas left. So with k batches a block, each may have a limit of gas_limit/k (and at
    most `fraction` of a block); k is chosen to fit the most placements in a block (8 batches
    of about 260 in 30M gas), the smaller batches on a tie.
    """
    cap = int(gas_limit * fraction)
    best = (0, 1, 1)  # (placements a block, k, items a batch)
    for k in range(1, MAX_TXS_PER_BLOCK + 1):
        budget = min(cap, gas_limit // k)
        # The most items whose nominal gas fits the budget (gas grows with n): bisection.
        lo, hi = 0, MAX_BATCH_ITEMS
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if nominal_batch_gas(mid) <= budget else (lo, mid - 1)
        if lo and k * lo >= best[0]:
            best = (k * lo, k, lo)
    _, k, n = best
    return k, max(1, n), max(nominal_batch_gas(1), min(cap, gas_limit // k))


@dataclass
class _Verdicts:
    """Which of the store's unplaceable verdicts still hold, so that a tick reads only the rest.

    A verdict (no provider could ever run the job, its escrow pays no minimum run, every
    provider able to run it refused it) depends on the job and on the approved providers'
    capacities, prices and labels alone, not on their load or heartbeats. So it holds until an
    event changes the job (which moves its `updated_block`; a reorg's rebuild clears it) or the
    providers change. Reading the same verdicts back every tick cost seconds behind a flood of
    spam. A fresh oracle, or new providers, check every verdict again, a window a tick.
    """

    #: What the verdicts were made against (`_verdict_key` of the approved providers).
    providers: object = None
    #: Verdicts on jobs up to this (updated_block, job_id) hold.
    upto: tuple[int, int] = (-1, -1)

    def under(self, providers: object) -> _Verdicts:
        """These verdicts, all to be checked again if the providers changed."""
        if providers != self.providers:
            self.providers, self.upto = providers, (-1, -1)
        return self

    def judged(self, cursor: int, stale: Sequence[Any], limit: int) -> None:
        """`stale`, read (at most `limit`) after `upto` with the store at block `cursor`, was
        judged again: if that was all of them, every verdict now holds up to the cursor."""
        if limit and len(stale) < limit:
            self.upto = (cursor + 1, -1)
        elif stale:
            self.upto = (stale[-1].updated_block, stale[-1].job_id)


def _verdict_key(providers: Sequence[Provider]) -> tuple[Any, ...]:
    """What of the approved providers an unplaceable verdict depends on."""
    return tuple(
        sorted(
            (
                p.address,
                p.cpus,
                p.gpus,
                p.mem_mb,
                p.cpu_price,
                p.gpu_price,
                p.gb_price,
                tuple(sorted(p.labels or ())),
            )
            for p in providers
        )
    )


class Oracle:
    """The oracle's ticks over one market (signing as its oracle) and one store. Built by
    ``build`` from its settings; the constructor only wires what it is given, and ``start``
    is the first call to the chain."""

    def __init__(self, settings: OracleSettings, market: Market, engine: Engine) -> None:
        self.settings = settings
        self.market = market
        self.w3 = market.w3
        self.address = market.sender_or_fail().address
        self.engine = engine
        self.sessions = session_factory(engine)
        self.ingester = Ingester(
            self.w3,
            market.address,
            self.sessions,
            confirmations=settings.confirmations,
            start_block=settings.start_block,
            initial_range=settings.getlogs_initial_range,
            max_range=settings.getlogs_max_range,
            reorg_window=settings.reorg_window,
            rpc_deadline_s=settings.rpc_deadline_s,
        )
        self.actions = ActionLog(
            self.sessions,
            self.market,
            stuck_s=settings.tx_stuck_s,
            rpc_deadline_s=settings.rpc_deadline_s,
        )
        name = settings.policy or DEFAULT_POLICY
        self.policy: Policy = get_policy(name)
        self.liveness = Liveness(settings.heartbeat_source == "api", settings.heartbeat_timeout_s)
        #: Whether the last look found no fresh heartbeat at all (the heartbeat path down), and
        #: until when, once one arrives again, no provider is taken for silent.
        self._heartbeat_path_down = False
        self._heartbeat_grace_until = 0.0
        self._lock = threading.Lock()
        self._verdicts = _Verdicts()
        self._batch: int | None = None
        self._batch_gas: int | None = None
        self._url = settings.rpc_url

    # ------------------------------------------------------------------ start-up

    def start(self) -> None:
        chain_id = int(self._rpc("reading the chain id", lambda: self.w3.eth.chain_id))
        self.settings.check_chain(chain_id)
        refuse_dev_key_off_devnet(self.market.sender_or_fail().account, chain_id)
        cfg = self.market.config()
        if str(cfg["oracle"]).lower() != self.address.lower():
            raise SettingsError(
                f"account {self.address} is not the market's oracle ({cfg['oracle']}): "
                "configure the oracle's key"
            )
        self.actions.recover()
        self.market.sender_or_fail().resync_nonce()
        log.info(
            "oracle started market=%s account=%s policy=%s confirmations=%d heartbeats=%s",
            self.market.address,
            self.address,
            self.policy.name,
            self.settings.confirmations,
            self.settings.heartbeat_source,
        )

    def _rpc(self, what: str, fn: Any) -> Any:
        return retrying(what, fn, deadline_s=self.settings.rpc_deadline_s, rpc_url=self._url)

    def batch_size(self) -> int:
        """Jobs per placeJobs transaction: the setting, else the nominal size of a batch of
        `batch_gas()` (actual batches are cut by their exact gas, so they may hold a few more)."""
        if self.settings.batch_size:
            return self.settings.batch_size
        self._size_batches()
        assert self._batch is not None
        return self._batch

    def batch_gas(self) -> int:
        """Gas limit one batch may reach."""
        self._size_batches()
        assert self._batch_gas is not None
        return self._batch_gas

    def _size_batches(self) -> None:
        if self._batch_gas is not None:
            return
        block = self._rpc("reading the block gas limit", lambda: self.w3.eth.get_block("latest"))
        limit = int(block["gasLimit"])
        k, n, gas = size_batches(limit, self.settings.batch_gas_fraction)
        self._batch, self._batch_gas = n, gas
        self.ingester.chunk_events = self._batch
        log.info(
            "placement batches: %d a block of %d gas, ~%d jobs and %d gas each",
            k,
            limit,
            n,
            gas,
        )

    # ------------------------------------------------------------------ ticks

    def ingest_tick(self) -> None:
        with self._lock:
            self._guard("ingest", self.ingester.run)

    def sync_tick(self) -> None:
        with self._lock:
            # Each step needs the one before: placing on a stale store would only waste gas.
            t0 = time.monotonic()
            self._size_batches_quietly()
            # A long backlog is read in chunks, and each chunk's full batches are sent at once:
            # the chain starts mining placements while the rest is still being read.
            ingest = lambda: self.ingester.run(on_chunk=self._place_early)  # noqa: E731
            if self._guard("ingest", ingest) is _FAILED:
                return
            t1 = time.monotonic()
            if self._guard("settle", lambda: self.actions.settle(self._on_skipped)) is _FAILED:
                return
            t2 = time.monotonic()
            self._guard("place", self.place)
            log.debug(
                "sync tick ingest_s=%.3f settle_s=%.3f place_s=%.3f",
                t1 - t0,
                t2 - t1,
                time.monotonic() - t2,
            )

    def _place_early(self) -> None:
        self._guard("place", lambda: self.place(full_only=True))

    def _size_batches_quietly(self) -> None:
        if not self.settings.batch_size:
            self._guard("batch sizing", self._size_batches)

    def keep_tick(self) -> None:
        with self._lock:
            self._guard("keep", self.keep)

    def _guard(self, what: str, fn: Any) -> Any:
        """A tick that fails logs why and leaves the rest to the next tick."""
        try:
            fn()
        except RpcUnavailable as exc:
            log.error("%s tick: %s; the next tick tries again", what, exc)
        except ChainError as exc:
            log.error("%s tick: chain refused: %s; the next tick tries again", what, exc)
        except Exception:
            log.exception("%s tick failed; the next tick tries again", what)
        else:
            return None
        return _FAILED

    def _cursor_block(self) -> int:
        cur = self.ingester.cursor()
        return cur[0] if cur else -1

    def _on_skipped(self, action: OracleAction, skipped: list[SkippedItem]) -> None:
        for item in skipped:
            log.info(
                "%s skipped by the contract tx=%s index=%d job=%d reason=%s",
                action.kind,
                action.tx_hash,
                item.position,
                item.job_id,
                item.error,
            )

    # ------------------------------------------------------------------ place

    def place(self, *, full_only: bool = False) -> TickStats:
        """Places pending jobs. With `full_only` (mid-way through reading a backlog) only full
        batches are sent; the rest waits for more of the backlog."""
        stats = TickStats()
        room = self.settings.max_txs_in_flight - len(self.actions.unsettled())
        if room <= 0:
            return stats
        cursor = self._cursor_block()
        busy = self.actions.busy(cursor, ("place",))
        with self.sessions() as s:
            provs = list(
                s.scalars(select(Provider).where(Provider.status == int(ProviderStatus.APPROVED)))
            )
            verdicts = self._verdicts.under(_verdict_key(provs))
            # One read serves both: pending jobs to place, and those of our unmined placements
            # (still PENDING in the store), whose room on a provider is taken already.
            limit = MAX_PENDING_PER_TICK + len(busy)
            rows = q.placement_rows(s, limit=limit, unjudged_only=True)
            pending = [j for j in rows if j.job_id not in busy][:MAX_PENDING_PER_TICK]
            # What room the window has left goes to verdicts that may no longer hold.
            rejudge = MAX_PENDING_PER_TICK - len(pending)
            stale = q.unplaceable_rows_after(s, verdicts.upto, rejudge) if rejudge else []
            pending += [j for j in stale if j.job_id not in busy]
            inflight_jobs: dict[int, Any] = {j.job_id: j for j in rows if j.job_id in busy}
            if len(rows) >= limit:  # cut short: busy jobs past the cut are read by id
                missing = [jid for jid in busy if jid not in inflight_jobs]
                for j in q.placement_rows(s, job_ids=missing):
                    inflight_jobs[j.job_id] = j
            if not pending:
                verdicts.judged(cursor, stale, rejudge)
                return stats
            on_prov = q.jobs_on_providers(s)
            refused = q.refusals(s, [j.job_id for j in pending if j.returns])
            # Chain time as far as the store has read: ends of running jobs are estimated from
            # it, so it must move on even while no new request arrives.
            ingested_time = s.scalar(select(func.max(Block.timestamp))) or 0
        in_flight = {
            jid: (prov, inflight_jobs[jid])
            for jid, prov in busy.items()
            if prov and jid in inflight_jobs and inflight_jobs[jid].status == JobStatus.PENDING
        }
        now_chain = float(max(ingested_time, *(j.requested_at for j in pending)))
        states = provider_states(provs, on_prov, in_flight, self.liveness, time.time())
        by_id = {j.job_id: j for j in pending}
        jobs = [pending_job(j, refused.get(j.job_id, frozenset())) for j in pending]
        jobs, underfunded = _funded_for_a_minimum_run(jobs, by_id, states)
        decisions = self.policy.decide(jobs, states, now_chain)
        placements = decisions.placements
        unplaceable = [*decisions.unplaceable, *underfunded]
        self._record_unplaceable(by_id, unplaceable, placed={p.job_id for p in placements})
        verdicts.judged(cursor, stale, rejudge)
        stats.placed = len(placements)
        stats.unplaceable = len(unplaceable)
        stats.held = len(pending) - stats.placed - stats.unplaceable
        batches = self._batches(placements, by_id)
        if full_only:
            batches = [b for b in batches if b.full]
        stats.txs = self._send_placements(batches[:room])
        if stats.placed:
            log.info(
                "place tick pending=%d placed=%d held=%d unplaceable=%d txs=%d",
                len(pending),
                stats.placed,
                stats.held,
                stats.unplaceable,
                stats.txs,
            )
        return stats

    def _batches(self, placements: Sequence[Any], by_id: dict[int, Any]) -> list[_Batch]:
        """Placements cut into batches: by count if `batch_size` is set, else each batch as
        large as its exact gas limit allows under `batch_gas()`."""
        size = self.settings.batch_size or MAX_BATCH_ITEMS
        budget = self.batch_gas() if not self.settings.batch_size else None
        out: list[_Batch] = []
        cur = _Batch()
        checksummed: dict[str, str] = {}  # a few providers, thousands of placements
        for p in placements:
            j = by_id[p.job_id]
            prov = checksummed.get(p.provider)
            if prov is None:
                prov = checksummed[p.provider] = Web3.to_checksum_address(p.provider)
            terms = Terms(
                bytes.fromhex(j.spec_hash[2:]), j.cpus, j.gpus, j.mem_mb, j.max_price_per_minute
            )
            # The price the policy saw: the contract refuses the placement if the provider
            # raised its prices since.
            placement = Placement(j.job_id, prov, terms, quoted_price=p.price_per_minute)
            it = calldata.item(j.job_id, prov, terms, placement.quote())
            if cur.items and (
                len(cur.items) >= size
                or (budget is not None and cur.gas(it, prov.lower()) > budget)
            ):
                cur.full = True
                out.append(cur)
                cur = _Batch()
            cur.placements.append(placement)
            cur.items.append(it)
            cur.providers.add(prov.lower())
            cur.item_calldata_gas += calldata_gas(it)
        if cur.items:
            cur.full = len(cur.items) >= size
            out.append(cur)
        return out

    def _send_placements(self, batches: Sequence[_Batch]) -> int:
        """Sends one placeJobs per batch, consecutive nonces, without waiting for any.

        Intents are committed before the first send, so a crash mid-way leaves a record of
        every transaction that may be in flight.
        """
        if not batches:
            return 0
        ids = self.actions.intend_many(
            "place",
            [
                ([p.job_id for p in b.placements], [p.provider for p in b.placements])
                for b in batches
            ],
        )
        sender = self.market.sender_or_fail()
        sent = []
        try:
            for action, batch in zip(ids, batches, strict=True):
                # The exact gas limit (no eth_estimateGas round trip): see chain.gas.
                pending = sender.send(
                    self.market.address,
                    calldata.join(batch.items),
                    f"placing {len(batch.items)} jobs",
                    gas=batch.gas(),
                )
                sent.append((action, pending))
                log.info(
                    "sent placeJobs tx=%s nonce=%d jobs=%d first=%d gas=%d",
                    pending.tx_hash.to_0x_hex(),
                    pending.nonce,
                    len(batch.items),
                    batch.placements[0].job_id,
                    batch.gas(),
                )
        except Exception:
            # The rest were not sent (or not known to be): free their jobs and re-read the
            # nonce, since the sender may have handed one out that never reached the node.
            self.actions.mark_sent_many(sent)
            self.actions.mark_unsent_many(ids[len(sent) :])
            sender.resync_nonce()
            raise
        self.actions.mark_sent_many(sent)
        return len(sent)

    def _record_unplaceable(
        self, by_id: dict[int, Any], unplaceable: Sequence[Any], placed: set[int]
    ) -> None:
        reasons = {u.job_id: u.reason[:MAX_UNPLACEABLE_REASON] for u in unplaceable}
        changed = [
            jid
            for jid, j in by_id.items()
            if (reasons.get(jid) if jid not in placed else None) != j.unplaceable_reason
        ]
        if not changed:
            return
        # One statement for them all: a flood of spam is judged 20,000 jobs a tick, and a
        # read and write per job took about 3 ms each.
        with self.sessions.begin() as s:
            s.execute(
                update(Job),
                [{"job_id": jid, "unplaceable_reason": reasons.get(jid)} for jid in changed],
            )
        newly = [jid for jid in changed if reasons.get(jid)]
        for jid in newly[:MAX_LOGGED_UNPLACEABLE]:
            log.warning("job %d is unplaceable: %s", jid, reasons[jid])
        if len(newly) > MAX_LOGGED_UNPLACEABLE:
            log.warning(
                "and %d more jobs are unplaceable (their reasons are in the store)",
                len(newly) - MAX_LOGGED_UNPLACEABLE,
            )

    # ------------------------------------------------------------------ keep

    def keep(self) -> dict[str, int]:
        cursor = self._cursor_block()
        cfg = self.market.config()
        head = self._rpc("reading the head block", lambda: self.w3.eth.get_block("latest"))
        now = int(head["timestamp"])
        busy = self.actions.busy(cursor, ("expire", "reclaim", "fail"))
        expire: list[int] = []
        reclaim: list[int] = []
        fail: list[tuple[int, int]] = []
        # Heartbeats carry wall-clock times, bills run on block times: a heartbeat's time is
        # moved onto the chain's clock by their difference now (seconds on a live chain).
        clock_offset = now - int(time.time())
        with self.sessions() as s:
            silent = self._silent_providers(s)
            banned = set(
                s.scalars(
                    select(Provider.address).where(Provider.status == int(ProviderStatus.BANNED))
                )
            )
            for j in q.jobs_in_status(s, q.ON_PROVIDER):
                if j.job_id in busy:
                    continue
                if j.status == JobStatus.RUNNING:
                    if j.provider in silent:
                        fail.append((j.job_id, silent[j.provider] + clock_offset))
                    elif (
                        j.started_at is not None
                        and j.price_per_minute
                        and now
                        >= j.started_at + funded_seconds(escrow=j.escrow, price=j.price_per_minute)
                    ):
                        expire.append(j.job_id)
                elif j.status == JobStatus.META_SCHEDULED and j.provider in banned:
                    # A banned provider cannot accept; what it accepted before the ban it may
                    # still start, so that times out as any other.
                    reclaim.append(j.job_id)
                elif j.status == JobStatus.META_SCHEDULED and j.placed_at is not None:
                    if now >= j.placed_at + int(cfg["accept_timeout_s"]):
                        reclaim.append(j.job_id)
                elif (
                    j.status == JobStatus.SCHEDULED
                    and j.accepted_at is not None
                    and now >= j.accepted_at + int(cfg["start_timeout_s"])
                ):
                    reclaim.append(j.job_id)
        done = {"expire": 0, "reclaim": 0, "fail": 0}
        last_seen = dict(fail)

        def fail_jobs(ids: list[int]) -> Any:
            return self.market.fail_jobs([(jid, last_seen[jid]) for jid in ids])

        for kind, ids, call in (
            ("fail", list(last_seen), fail_jobs),
            ("expire", expire, self.market.expire_jobs),
            ("reclaim", reclaim, self.market.reclaim_jobs),
        ):
            for start in range(0, len(ids), 200):
                chunk = ids[start : start + 200]
                done[kind] += self._keep_send(kind, chunk, call)
        return done

    def _silent_providers(self, s: Any) -> dict[str, int]:
        """Providers whose heartbeats stopped, each with its last sign of life (the time its
        last heartbeat was signed at, no later than it was received): its jobs are billed up to it.

        A provider that never sent one is unknown, not silent, so an oracle started before the
        API fails nobody. And while no provider at all has a fresh heartbeat, the silence is the
        heartbeat path's (the API down or unreachable), not the providers': nobody is failed,
        and the jobs that outlive the outage are billed as their providers report them. When
        the path comes back, every provider has one whole timeout to be heard again before it
        is taken for silent: the first beat through a returning API is not the others' proof of
        silence (their agents wait out their own backoff), and failing them then refunded
        compute they delivered through the outage."""
        if not self.liveness.use_heartbeats:
            return {}
        now = time.time()
        timeout = self.settings.heartbeat_timeout_s
        limit = now - timeout
        rows = s.execute(
            select(Provider.address, Provider.last_heartbeat_at, Provider.heartbeat).where(
                Provider.last_heartbeat_at.is_not(None)
            )
        ).all()
        if not any(at >= limit for _, at, _ in rows):
            if rows:
                self._heartbeat_path_down = True
                log.warning(
                    "no provider has sent a heartbeat for %ds: treating it as an outage of the "
                    "heartbeat path, failing no job",
                    timeout,
                )
            return {}
        if self._heartbeat_path_down:
            self._heartbeat_path_down = False
            self._heartbeat_grace_until = now + timeout
            log.info("heartbeats arrive again: every provider has %ds to be heard", timeout)
        if now < self._heartbeat_grace_until:
            return {}
        return {addr: _signed_at(at, beat) for addr, at, beat in rows if at < limit}

    def _keep_send(self, kind: str, ids: list[int], call: Any) -> int:
        action = self.actions.intend(kind, ids, None)
        try:
            receipt = call(ids)
        except Exception:
            self.actions.mark_unsent(action)
            self.market.sender_or_fail().resync_nonce()
            raise
        skipped = self.actions.mark_receipt(action, receipt)
        for item in skipped:
            log.info(
                "%s skipped job=%d index=%d reason=%s", kind, item.job_id, item.position, item.error
            )
        n = len(ids) - len(skipped)
        log.info(
            "%s jobs=%d done=%d tx=%s", kind, len(ids), n, receipt["transactionHash"].to_0x_hex()
        )
        return n

    def close(self) -> None:
        self.engine.dispose()


def _funded_for_a_minimum_run(
    jobs: Sequence[PendingJob], by_id: dict[int, Any], providers: Sequence[ProviderState]
) -> tuple[list[PendingJob], list[Unplaceable]]:
    """The jobs whose escrow pays at least `MIN_RUN_S` on the cheapest provider able to run
    them; the others are not offered to any (a job paying a provider less than its own
    transactions cost is spam to it), and take no room from those that pay."""
    kept: list[PendingJob] = []
    refused: list[Unplaceable] = []
    for job, cheapest in zip(jobs, cheapest_prices(jobs, providers), strict=True):
        escrow = by_id[job.job_id].escrow
        if cheapest and funded_seconds(escrow=escrow, price=cheapest) < MIN_RUN_S:
            refused.append(
                Unplaceable(
                    job.job_id,
                    f"the escrow of {escrow} units pays less than {MIN_RUN_S} s at "
                    f"{cheapest} units/min, the cheapest price of a provider able to run it: "
                    "top it up",
                )
            )
        else:
            kept.append(job)
    return kept, refused


def _signed_at(received: int, heartbeat: Any) -> int:
    """When the provider's last heartbeat says it was alive: the time it signed, capped by the
    time the API received it (a clock ahead of the chain's cannot buy billed time)."""
    signed = heartbeat.get("timestamp") if isinstance(heartbeat, dict) else None
    if isinstance(signed, (int, float)) and signed == signed:  # not NaN
        return int(min(float(received), float(signed)))
    return int(received)


def freeze_startup_heap() -> None:
    """Moves what start-up built (web3, SQLAlchemy, pydantic: several hundred thousand objects
    that live as long as the process) out of the cyclic collector's reach.

    Otherwise each full collection walks them all: about 60 ms, and one tends to fall in the
    middle of reading a backlog, when thousands of new objects trip the collector's threshold.
    Garbage made later is still collected as usual."""
    gc.collect()
    gc.freeze()


def build(settings: OracleSettings) -> Oracle:
    """An oracle wired from its settings: its key, the node, the market, and the store brought
    to the latest schema."""
    address = settings.require_market()
    account = settings.account()
    market = Market(
        settings.web3(),
        address,
        account,
        rpc_deadline_s=settings.rpc_deadline_s,
        priority_fee_wei=int(settings.priority_fee_gwei * 10**9),
        receipt_timeout_s=settings.receipt_timeout_s,
    )
    upgrade_to_head(settings.database_url)
    return Oracle(settings, market, make_engine(settings.database_url))


def run(settings: OracleSettings, stop: threading.Event | None = None) -> None:
    """Runs the oracle until SIGINT/SIGTERM (or `stop` is set)."""
    logs.setup(settings.log_level)
    oracle = build(settings)
    freeze_startup_heap()
    oracle.start()
    stop = stop or threading.Event()
    sched = BackgroundScheduler()
    opts = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    s = settings
    sched.add_job(oracle.sync_tick, "interval", seconds=s.place_interval_s, id="sync", **opts)
    sched.add_job(oracle.ingest_tick, "interval", seconds=s.ingest_interval_s, id="ingest", **opts)
    sched.add_job(oracle.keep_tick, "interval", seconds=s.keep_interval_s, id="keep", **opts)
    with stop_on_signals(stop, log, "the current tick"):
        oracle.sync_tick()  # no need to wait one interval for the first placements
        sched.start()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            sched.shutdown(wait=True)
            oracle.close()
            log.info("oracle stopped")


def run_oracle_command(config_path: str | None) -> int:
    """`metascheduler oracle run`: exit 0 after a clean stop, else the exit code of the error
    that stopped it (`metascheduler.errors`: 2 settings or key, 3 the RPC does not answer)."""
    logs.setup("INFO")
    try:
        run(OracleSettings.load(config_path))
    except MetaschedulerError as exc:
        log.error("oracle stopped: %s", one_line(exc))
        return exc.exit_code
    return 0
