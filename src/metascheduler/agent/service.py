"""The provider agent: takes the jobs placed on its provider, runs them on its backend, and
reports every step on chain.

One round (``Agent.tick``), every ``poll_interval_s``:

1. Read ``JobPlaced`` logs filtered on this provider's address, from a persisted block cursor
   (rewound when the chain reorganised under it). New job ids join the tracked set.
2. Read the stored record of every tracked job (``getJob``, in JSON-RPC batches) and the
   backend's status of every backend job (one call). The chain is the truth about a job; the
   backend is the truth about the process.
3. Decide per job: admit and queue a new placement (spec from its ``JobRequested`` event) or
   refuse it with a reason; report ACCEPT, START and COMPLETE as the backend moves; expire and
   kill a job whose escrow is spent; kill a job the chain ended (cancelled, out of credits) or
   took away; extend the backend's time limit after a top-up.
4. Send all ACCEPT/START/COMPLETE steps in one ``providerBatch``; items the contract skipped
   are re-read at once and acted on (a job cancelled meanwhile is killed).
5. Save the state; send a signed heartbeat when one is due.

Restart-safe: a backend id is saved before the chain hears of the job, so a job is never
submitted twice; at start-up ``Backend.adopt()`` fills in what the state file lacks, and the
first round reconciles both views (see ``outcomes`` for the codes of lost jobs). Jobs keep
running on the backend while the agent is down.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from metascheduler.agent import heartbeats
from metascheduler.agent.admission import Refusal, admit, time_limit_s
from metascheduler.agent.backends import (
    Backend,
    BackendError,
    BackendJob,
    BackendState,
    BackendStatus,
    job_name,
    make_backend,
)
from metascheduler.agent.chainview import ChainView, Head
from metascheduler.agent.outcomes import EXIT_LOST, exit_code
from metascheduler.agent.settings import AgentSettings
from metascheduler.agent.state import AgentState, JobRecord, StateError, StateStore
from metascheduler.billing import funded_seconds
from metascheduler.chain import ChainError, Market
from metascheduler.chain.rpc import connect, retrying
from metascheduler.chain.types import (
    Hardware,
    JobStatus,
    JobView,
    Prices,
    ProviderAction,
    ProviderStatus,
)
from metascheduler.config import SettingsError
from metascheduler.keys import KeyError_, load_account, refuse_dev_key_off_devnet

log = logging.getLogger("metascheduler.agent")

B = BackendState
Step = tuple[int, ProviderAction, int]

#: Steps per providerBatch transaction (gas grows linearly; keep well under a block).
MAX_STEPS_PER_TX = 100
#: A job's time limit is raised for a newly measured start lag only when it adds this much.
LAG_TOLERANCE_S = 10
#: Longest start lag (chain start behind backend start) believed; more is a clock problem.
MAX_LAG_S = 24 * 3600
#: After an expiry the contract skipped (still funded by its clock), wait before trying again.
EXPIRE_RETRY_S = 10.0
APPROVAL_LOG_EVERY_S = 60.0


class AgentError(Exception):
    """The agent cannot go on; the message says why and what to do."""


@dataclass
class Round:
    """What one round did (returned by ``tick`` for logs and tests)."""

    placed: list[int] = field(default_factory=list)
    submitted: dict[int, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    skipped: list[tuple[int, int, str]] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    expired: list[int] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    extended: dict[int, int] = field(default_factory=dict)
    dropped: list[int] = field(default_factory=list)
    heartbeat: bool = False


class Agent:
    """One provider's agent over one market and one backend. ``start()``, then ``tick()``."""

    def __init__(
        self,
        settings: AgentSettings,
        market: Market,
        backend: Backend,
        *,
        genesis: str,
        name_prefix: str,
    ) -> None:
        self.settings = settings
        self.market = market
        self.backend = backend
        self.sender = market.sender_or_fail()
        self.address = self.sender.address
        self.chain = ChainView(
            market,
            self.address,
            start_block=settings.start_block,
            getlogs_max_range=settings.getlogs_max_range,
            rpc_deadline_s=settings.rpc_deadline_s,
        )
        self.store = StateStore(settings.state_dir)
        self.prefix = name_prefix
        self.genesis = genesis
        self._state: AgentState | None = None
        self.hardware: Hardware | None = None
        self._next_heartbeat = 0.0
        self._expire_not_before: dict[int, float] = {}

    @property
    def state(self) -> AgentState:
        if self._state is None:
            raise RuntimeError("Agent.start() first")
        return self._state

    # ------------------------------------------------------------------ life cycle

    def start(self) -> ProviderStatus:
        """Opens (locks) the state, adopts the backend's jobs, registers the provider if its
        record differs, and returns its standing."""
        self.store.open()
        try:
            self._state = self.store.load(self.market.address, self.address, self.genesis)
            self.hardware = self._resolve_hardware()
            self._adopt()
            self.store.save(self.state)
            return self.register()
        except BaseException:
            self.store.close()
            raise

    def close(self) -> None:
        if self._state is not None:
            self.store.save(self._state)
        self.store.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _resolve_hardware(self) -> Hardware:
        hw = self.settings.hardware
        if hw.cpus is None or hw.gpus is None or hw.mem_mb is None:
            cap = self.backend.capacity()
            return Hardware(
                nodes=hw.nodes,
                cpus=hw.cpus if hw.cpus is not None else cap.total_cpus,
                gpus=hw.gpus if hw.gpus is not None else cap.total_gpus,
                mem_mb=hw.mem_mb if hw.mem_mb is not None else cap.total_mem_mb,
            )
        return Hardware(hw.nodes, hw.cpus, hw.gpus, hw.mem_mb)

    def _adopt(self) -> None:
        """Backend jobs the state file does not know (it was lost, or the agent died between a
        submission and the save) become tracked; the first round sorts out which are live."""
        adopted = self.backend.adopt()
        if not adopted:
            return
        count = self.market.job_count()
        for job_id, native in sorted(adopted.items()):
            if job_id > count:
                continue  # not a job of this market (a shared cluster, an older deployment)
            rec = self.state.jobs.get(job_id)
            if rec is None:
                self.state.jobs[job_id] = JobRecord(job_id, native_id=native)
                log.info("adopted backend job %s as job %d", native, job_id)
            elif rec.native_id is None:
                rec.native_id = native
                log.info("adopted backend job %s for job %d", native, job_id)
            elif rec.native_id != native:
                log.warning(
                    "job %d: the state file says backend job %s, the backend also has %s; "
                    "keeping %s (the state file's)",
                    job_id,
                    rec.native_id,
                    native,
                    rec.native_id,
                )

    # ------------------------------------------------------------------ registration

    def register(self) -> ProviderStatus:
        """Registers (or updates) the provider's hardware, prices and labels when the chain's
        record differs from the settings. Returns its standing."""
        assert self.hardware is not None
        p = self.settings.prices
        prices = Prices(p.cpu, p.gpu, p.gb)
        labels = list(self.settings.labels)
        status, hw, current = self.market.get_provider(self.address)
        if status is ProviderStatus.BANNED:
            raise AgentError(
                f"provider {self.address} is banned on market {self.market.address}: it cannot "
                "register or take jobs; ask the admin why"
            )
        same = (
            status is not ProviderStatus.NONE
            and hw == self.hardware
            and current == prices
            and sorted(self.chain.registered_labels(self.chain.head().number) or []) == labels
        )
        if not same:
            self.market.register_provider(self.hardware, prices, labels)
            log.info(
                "registered provider %s: %s, prices %s units/min, labels %s",
                self.address,
                self.hardware,
                prices,
                labels or "none",
            )
            status, _, _ = self.market.get_provider(self.address)
        return status

    def wait_for_approval(self, stop: threading.Event) -> bool:
        """Blocks until the admin approves the provider (True) or ``stop`` is set (False)."""
        last_log = -APPROVAL_LOG_EVERY_S
        while not stop.is_set():
            status, _, _ = self.market.get_provider(self.address)
            if status is ProviderStatus.APPROVED:
                log.info("provider %s is approved: taking jobs", self.address)
                return True
            if status is ProviderStatus.BANNED:
                raise AgentError(f"provider {self.address} was banned while waiting for approval")
            if status is ProviderStatus.NONE:
                self.register()
            if time.monotonic() - last_log >= APPROVAL_LOG_EVERY_S:
                log.info(
                    "waiting for the admin to approve %s on market %s "
                    "(metascheduler admin approve-provider %s)",
                    self.address,
                    self.market.address,
                    self.address,
                )
                last_log = time.monotonic()
            stop.wait(self.settings.poll_interval_s)
        return False

    # ------------------------------------------------------------------ one round

    def tick(self) -> Round:
        rnd = Round()
        head = self.chain.head()
        self._scan(head, rnd)
        jobs = self.state.jobs
        views = self.chain.jobs(jobs) if jobs else {}
        natives = [r.native_id for r in jobs.values() if r.native_id is not None]
        statuses = self.backend.status(natives) if natives else {}
        # The contract compares with its block time; a quiet devnet's head lags the wall clock.
        now = max(head.timestamp, int(time.time()))

        refusals: dict[int, str] = {}
        expire: list[int] = []
        for job_id in sorted(jobs):
            rec = jobs[job_id]
            st = statuses.get(rec.native_id) if rec.native_id else None
            view = views.get(job_id)
            if view is None:
                # No such job on this chain (a devnet restarted under an old backend job).
                self._retire(rec, None, st, rnd)
            else:
                self._consider(rec, view, st, now, head, rnd, refusals, expire)

        self._send_steps(rnd)
        self._send_refusals(refusals, rnd)
        self._send_expiries(expire, rnd)
        self.store.save(self.state)
        self._maybe_heartbeat(views, statuses, rnd)
        return rnd

    def _scan(self, head: Head, rnd: Round) -> None:
        st = self.state
        s = self.settings
        if st.cursor_block is not None:
            moved = st.cursor_block > head.number or (
                st.cursor_hash is not None
                and self.chain.block_hash(st.cursor_block) != st.cursor_hash
            )
            if moved:
                back = max(s.start_block - 1, st.cursor_block - s.reorg_rewind_blocks, -1)
                log.warning(
                    "the chain changed under block %d (reorg or a restarted devnet): "
                    "rereading placements from block %d",
                    st.cursor_block,
                    back + 1,
                )
                st.cursor_block = back if back >= 0 else None
                st.cursor_hash = None
        to = head.number - s.confirmations
        first = s.start_block if st.cursor_block is None else st.cursor_block + 1
        if to < first:
            return
        for job_id, block in self.chain.placements(first, to):
            rec = st.jobs.get(job_id)
            if rec is None:
                st.jobs[job_id] = JobRecord(job_id, placed_block=block)
                rnd.placed.append(job_id)
            else:
                rec.placed_block = max(rec.placed_block, block)
        st.cursor_block = to
        st.cursor_hash = head.hash if to == head.number else self.chain.block_hash(to)

    # ------------------------------------------------------------------ decisions

    def _consider(
        self,
        rec: JobRecord,
        view: JobView,
        st: BackendStatus | None,
        now: int,
        head: Head,
        rnd: Round,
        refusals: dict[int, str],
        expire: list[int],
    ) -> None:
        ours = view.provider.lower() == self.address.lower()
        status = view.status
        if not ours or status.terminal or status is JobStatus.PENDING:
            self._retire(rec, view, st, rnd)
        elif status is JobStatus.META_SCHEDULED:
            self._on_placed(rec, view, st, head, rnd, refusals)
        elif status is JobStatus.SCHEDULED:
            self._on_scheduled(rec, view, st, rnd, refusals)
        elif status is JobStatus.RUNNING:
            self._on_running(rec, view, st, now, rnd, expire)

    def _retire(
        self, rec: JobRecord, view: JobView | None, st: BackendStatus | None, rnd: Round
    ) -> None:
        """The chain is done with this job here: kill what still runs, then forget it."""
        if rec.native_id is not None and st is not None and not st.state.is_terminal:
            if view is None:
                why = "not a job on this chain"
            elif view.provider.lower() == self.address.lower() or view.status.terminal:
                why = f"{view.status.name} on chain"
            else:
                why = "no longer placed on this provider"
            if not self._kill(rec, f"it is {why}", rnd):
                return  # try again next round
        del self.state.jobs[rec.job_id]
        self.chain.forget(rec.job_id)
        self._expire_not_before.pop(rec.job_id, None)
        rnd.dropped.append(rec.job_id)

    def _on_placed(
        self,
        rec: JobRecord,
        view: JobView,
        st: BackendStatus | None,
        head: Head,
        rnd: Round,
        refusals: dict[int, str],
    ) -> None:
        if rec.native_id is None:
            if self._submit(rec, view, head, rnd, refusals):
                rnd.steps.append((rec.job_id, ProviderAction.ACCEPT, 0))
            return
        # Known to the backend already (an agent that died before its ACCEPT went out, or an
        # adopted job): never submit again; catch the chain up with the backend.
        if st is not None and st.state in (B.CANCELLED, B.LOST):
            refusals[rec.job_id] = f"its backend job {rec.native_id} was {st.state.value.lower()}"
            return
        rnd.steps.append((rec.job_id, ProviderAction.ACCEPT, 0))
        self._progress(rec, view, st, rnd)

    def _on_scheduled(
        self,
        rec: JobRecord,
        view: JobView,
        st: BackendStatus | None,
        rnd: Round,
        refusals: dict[int, str],
    ) -> None:
        if rec.native_id is None or st is None:
            refusals[rec.job_id] = "the backend has no job for it (lost before it started)"
            return
        if st.state in (B.CANCELLED, B.LOST):
            refusals[rec.job_id] = (
                f"its backend job {rec.native_id} was {st.state.value.lower()} before it started"
            )
            return
        self._progress(rec, view, st, rnd)

    def _progress(
        self, rec: JobRecord, view: JobView, st: BackendStatus | None, rnd: Round
    ) -> None:
        """START when the backend runs the job; START and COMPLETE if it already ended (it
        ran between two rounds: the chain meters nothing for it)."""
        if st is None or st.state in (B.QUEUED, B.UNKNOWN):
            self._extend(rec, view, st, rnd)
            return
        rnd.steps.append((rec.job_id, ProviderAction.START, 0))
        if st.state.is_terminal:
            rnd.steps.append((rec.job_id, ProviderAction.COMPLETE, exit_code(st)))
        else:
            self._extend(rec, view, st, rnd)

    def _on_running(
        self,
        rec: JobRecord,
        view: JobView,
        st: BackendStatus | None,
        now: int,
        rnd: Round,
        expire: list[int],
    ) -> None:
        if rec.native_id is None or st is None:
            log.error(
                "job %d is RUNNING on chain but no backend job is known for it: reporting it "
                "failed with code %d (lost)",
                rec.job_id,
                EXIT_LOST,
            )
            rnd.steps.append((rec.job_id, ProviderAction.COMPLETE, EXIT_LOST))
            return
        funded_until = view.since + funded_seconds(view.escrow, view.price_per_minute)
        spent = now >= funded_until
        if st.state.is_terminal:
            if st.state is B.TIMEOUT and spent:
                expire.append(rec.job_id)  # out of credits: not the provider's report
            else:
                rnd.steps.append((rec.job_id, ProviderAction.COMPLETE, exit_code(st)))
            return
        if spent:
            if time.monotonic() >= self._expire_not_before.get(rec.job_id, 0.0):
                expire.append(rec.job_id)
            return
        self._extend(rec, view, st, rnd)

    # ------------------------------------------------------------------ backend actions

    def _submit(
        self, rec: JobRecord, view: JobView, head: Head, rnd: Round, refusals: dict[int, str]
    ) -> bool:
        job_id = rec.job_id
        req = self.chain.request(job_id, rec.placed_block or head.number)
        if req is None:
            refusals[job_id] = "no JobRequested event found for it"
            return False
        assert self.hardware is not None
        verdict = admit(req, view, self.hardware, self.settings.labels)
        if isinstance(verdict, Refusal):
            refusals[job_id] = verdict.reason
            return False
        s = self.settings
        limit = time_limit_s(
            view.escrow, view.price_per_minute, s.time_limit_grace_s, 0, s.max_time_limit_s
        )
        job = BackendJob(job_id, verdict, limit, name=job_name(job_id, self.prefix))
        try:
            native = self.backend.submit(job)
        except BackendError as exc:
            if exc.command is not None and exc.returncode is None:
                # The command did not answer or is missing: the cluster's trouble, not the job's.
                log.warning("job %d not submitted this round, will retry: %s", job_id, exc)
                return False
            log.warning("job %d refused by the backend: %s", job_id, exc)
            refusals[job_id] = f"the backend refused it: {_short(exc)}"
            return False
        rec.native_id = native
        rec.time_limit_s, rec.escrow, rec.price = limit, view.escrow, view.price_per_minute
        # Saved before the chain hears of it: a crash from here on finds the job, never
        # submits it twice.
        self.store.save(self.state)
        rnd.submitted[job_id] = native
        log.info(
            "job %d (%s) queued on %s as %s with a time limit of %d s",
            job_id,
            verdict.name,
            self.backend.name,
            native,
            limit,
        )
        return True

    def _extend(self, rec: JobRecord, view: JobView, st: BackendStatus | None, rnd: Round) -> None:
        """Raise the backend's time limit to what the escrow now pays for (after a top-up),
        plus the lag of the chain's start behind the backend's once it is known."""
        if rec.native_id is None or st is None or st.state.is_terminal:
            return
        new_lag = False
        if view.status is JobStatus.RUNNING and rec.lag_s is None and st.started_at is not None:
            rec.lag_s = int(min(MAX_LAG_S, max(0.0, view.since - st.started_at)))
            new_lag = True
        s = self.settings
        want = time_limit_s(
            view.escrow,
            view.price_per_minute,
            s.time_limit_grace_s,
            rec.lag_s or 0,
            s.max_time_limit_s,
        )
        current = rec.time_limit_s
        if current is not None:
            if want <= current:
                return
            topped_up = rec.escrow is not None and view.escrow > rec.escrow
            if not topped_up and not (new_lag and want - current >= LAG_TOLERANCE_S):
                return
        try:
            self.backend.extend(rec.native_id, want)
        except BackendError as exc:
            log.warning("job %d: could not raise its time limit to %d s: %s", rec.job_id, want, exc)
            return
        log.info(
            "job %d: time limit of backend job %s raised from %s to %d s (escrow %d units)",
            rec.job_id,
            rec.native_id,
            current,
            want,
            view.escrow,
        )
        rec.time_limit_s, rec.escrow, rec.price = want, view.escrow, view.price_per_minute
        rnd.extended[rec.job_id] = want

    def _kill(self, rec: JobRecord, why: str, rnd: Round) -> bool:
        assert rec.native_id is not None
        try:
            self.backend.cancel(rec.native_id)
        except BackendError as exc:
            log.error(
                "job %d: could not kill backend job %s (%s): %s",
                rec.job_id,
                rec.native_id,
                why,
                exc,
            )
            return False
        rec.killed = True
        rnd.killed.append(rec.job_id)
        log.info("job %d: killed backend job %s: %s", rec.job_id, rec.native_id, why)
        return True

    # ------------------------------------------------------------------ transactions

    def _send_steps(self, rnd: Round) -> None:
        steps = rnd.steps
        for i in range(0, len(steps), MAX_STEPS_PER_TX):
            chunk = steps[i : i + MAX_STEPS_PER_TX]
            try:
                receipt = self.market.provider_batch(chunk)
            except ChainError as exc:
                log.error("reporting %d job steps failed (retried next round): %s", len(chunk), exc)
                continue
            skipped = self.market.skipped(receipt)
            for index, job_id, words in skipped:
                log.warning(
                    "step %s of job %d skipped by the contract: %s",
                    chunk[index][1].name,
                    job_id,
                    words,
                )
            rnd.skipped.extend(skipped)
            done = [s for k, s in enumerate(chunk) if k not in {sk[0] for sk in skipped}]
            for job_id, action, code in done:
                extra = f" with exit code {code}" if action is ProviderAction.COMPLETE else ""
                log.info("job %d: reported %s%s", job_id, action.name, extra)
            self._recheck({job_id for _, job_id, _ in skipped}, rnd)

    def _recheck(self, job_ids: set[int], rnd: Round) -> None:
        """Jobs whose step was skipped changed meanwhile (cancelled, say): act on them now."""
        job_ids = {j for j in job_ids if j in self.state.jobs}
        if not job_ids:
            return
        views = self.chain.jobs(job_ids)
        recs = [self.state.jobs[j] for j in sorted(job_ids)]
        natives = [r.native_id for r in recs if r.native_id is not None]
        statuses = self.backend.status(natives) if natives else {}
        for rec in recs:
            view = views.get(rec.job_id)
            if (
                view is None
                or view.status.terminal
                or view.provider.lower() != self.address.lower()
            ):
                st = statuses.get(rec.native_id) if rec.native_id else None
                self._retire(rec, view, st, rnd)

    def _send_refusals(self, refusals: dict[int, str], rnd: Round) -> None:
        for job_id, reason in sorted(refusals.items()):
            try:
                self.market.refuse_job(job_id, reason)
            except ChainError as exc:
                log.warning("refusing job %d failed (re-read next round): %s", job_id, exc)
                continue
            log.info("job %d refused: %s", job_id, reason)
            rnd.refused[job_id] = reason
            # Back to PENDING: a new placement on this provider starts afresh.
            self.state.jobs.pop(job_id, None)
            self.chain.forget(job_id)

    def _send_expiries(self, job_ids: list[int], rnd: Round) -> None:
        if not job_ids:
            return
        try:
            receipt = self.market.expire_jobs(job_ids)
        except ChainError as exc:
            log.error("expiring jobs %s failed (retried next round): %s", job_ids, exc)
            return
        skipped = {job_id: words for _, job_id, words in self.market.skipped(receipt)}
        for job_id in job_ids:
            rec = self.state.jobs.get(job_id)
            if job_id in skipped:
                # Someone else ended it first, or a top-up landed: the next round re-reads it.
                log.info("expiry of job %d skipped: %s", job_id, skipped[job_id])
                self._expire_not_before[job_id] = time.monotonic() + EXPIRE_RETRY_S
                continue
            rnd.expired.append(job_id)
            log.info("job %d ran out of credits: expired on chain", job_id)
            if rec is not None and rec.native_id is not None:
                self._kill(rec, "its escrow is spent (OUT_OF_CREDITS)", rnd)

    # ------------------------------------------------------------------ heartbeats

    def _maybe_heartbeat(
        self, views: dict[int, JobView], statuses: dict[str, BackendStatus], rnd: Round
    ) -> None:
        api = self.settings.api_url
        if not api or time.monotonic() < self._next_heartbeat:
            return
        self._next_heartbeat = time.monotonic() + self.settings.heartbeat_interval_s
        running, queued = [], []
        for job_id, rec in self.state.jobs.items():
            st = statuses.get(rec.native_id) if rec.native_id else None
            view = views.get(job_id)
            if st is None or view is None or view.status.terminal:
                continue
            if st.state is B.RUNNING:
                running.append(job_id)
            elif st.state is B.QUEUED:
                queued.append(job_id)
        try:
            capacity = self.backend.capacity()
        except BackendError as exc:
            log.warning("heartbeat skipped: the backend's capacity is unreadable: %s", exc)
            return
        self.state.heartbeat_seq = heartbeats.next_seq(self.state.heartbeat_seq)
        self.store.save(self.state)  # a seq is used once, even if the agent dies right after
        hb = heartbeats.build(
            provider=self.address,
            market=self.market.address,
            chain_id=self.sender.chain_id,
            seq=self.state.heartbeat_seq,
            capacity=capacity,
            running=running,
            queued=queued,
            backend=self.backend.name,
        )
        rnd.heartbeat = heartbeats.send(
            api, hb, self.sender.account, self.settings.heartbeat_timeout_s
        )


def _short(exc: BackendError) -> str:
    """The backend's message and the first line of its stderr, for an on-chain reason."""
    text = exc.message
    if exc.stderr and exc.stderr.strip():
        text += ": " + exc.stderr.strip().splitlines()[0]
    return text


# ---------------------------------------------------------------------- running the service


def build(settings: AgentSettings) -> Agent:
    """An agent wired from its settings: RPC, key, market and backend."""
    address = settings.require_market()
    account = load_account(
        keystore=settings.keystore,
        password=settings.keystore_password,
        private_key=settings.private_key,
    )
    w3 = connect(settings.rpc_url, timeout_s=settings.rpc_timeout_s)
    market = Market(w3, address, account, rpc_deadline_s=settings.rpc_deadline_s)
    refuse_dev_key_off_devnet(account, market.sender_or_fail().chain_id)
    genesis = retrying(
        "reading the genesis block", lambda: w3.eth.get_block(0), rpc_url=settings.rpc_url
    )
    prefix = settings.name_prefix(bytes(genesis["hash"]))
    backend = make_backend(settings.backend, **settings.backend_options(prefix))
    return Agent(settings, market, backend, genesis=genesis["hash"].to_0x_hex(), name_prefix=prefix)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM end the loop after the current round; jobs keep running on the backend."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping after this round", signal.Signals(signum).name)
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def run(settings: AgentSettings, stop: threading.Event | None = None) -> None:
    """Runs the agent until ``stop`` is set or SIGINT/SIGTERM arrives."""
    stop = stop or threading.Event()
    agent = build(settings)
    with _stop_on_signals(stop):
        status = agent.start()
        try:
            log.info(
                "agent for provider %s on market %s (%s backend), state in %s; standing %s",
                agent.address,
                agent.market.address,
                agent.backend.name,
                settings.state_dir,
                status.name,
            )
            if not agent.wait_for_approval(stop):
                return
            while not stop.is_set():
                try:
                    agent.tick()
                except (ChainError, BackendError) as exc:
                    log.error("round failed, retrying in %g s: %s", settings.poll_interval_s, exc)
                stop.wait(settings.poll_interval_s)
        finally:
            agent.close()
            log.info("agent stopped; jobs still running on the backend are adopted at restart")


def _hide_inputs(text: str) -> str:
    return re.sub(r"input_value=('[^']*'|\"[^\"]*\"|[^,\]]*)", "input_value=<hidden>", text)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_agent_command(config_path: str | None) -> int:
    """``metascheduler agent run [--config FILE]``: exit 0 on a clean stop, 2 for unusable
    settings, 1 when the agent cannot go on."""
    try:
        settings = AgentSettings.load(config_path)
    except SettingsError as exc:
        # pydantic quotes the offending input; a misspelt key field must not print the key.
        print(f"error: {_hide_inputs(str(exc))}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        run(settings)
    except (SettingsError, KeyError_, StateError, AgentError, BackendError, ChainError) as exc:
        log.error("agent stopped: %s", exc)
        return 1
    return 0
