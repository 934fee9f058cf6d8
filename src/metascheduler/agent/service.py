"""The provider agent: takes the jobs placed on its provider, runs them on its backend, and
reports every step on chain.

One round (``Agent.tick``) as soon as a new block is mined or a backend job ends, and at least
every ``poll_interval_s``:

1. Read ``JobPlaced`` logs filtered on this provider's address, from a persisted block cursor
   (rewound when the chain reorganised under it). New job ids join the tracked set.
2. Read the stored record of every tracked job (``getJob``, in JSON-RPC batches) and the
   backend's status of every backend job (one call). The chain is the truth about a job; the
   backend is the truth about the process.
3. Decide per job (``decide.decide``, a pure function where the "never run twice" rules read
   in one place) and carry the decision out: admit a placement (spec from its ``JobRequested``
   event) and ACCEPT it or refuse it; queue it on the backend; kill, forget, or raise its time
   limit; collect the steps to report and the expiries to send.
4. Save the state, then send (``outbox``) all ACCEPT/START/COMPLETE steps in ``providerBatch``
   transactions, the refusals and the expiries, without waiting for their receipts: a round
   that waited for one would see the next block's placements a block late.
5. Send a signed heartbeat when one is due.

Each round starts with the transactions of earlier rounds that the chain mined since (a chain
that mines each transaction as it comes has them mined at once: the round looks right after
sending too). Jobs whose ACCEPT is mined in a block still canonical are queued on the backend
at once (with ``confirmations`` = 0; otherwise in the round that sees the ACCEPT buried that
deep), before the round reads the backend: a job that starts at once is STARTed in the same
round, in the block after its ACCEPT's. Items the contract skipped are re-read at once and acted
on (a job cancelled meanwhile is killed). A job with a transaction in flight is not judged
until it is mined or given up.

A job the agent is done with keeps a tombstone (its backend id) while a reorg can still bring it
back, and is then matched with its backend job again, never resubmitted.

Restart-safe: a backend id is saved right after submission; at start-up ``Backend.adopt()``
fills in what the state file lacks (the agent died between the two), and the first round
reconciles both views (see ``outcomes`` for the codes of lost jobs). Jobs keep running on the
backend while the agent is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace

from web3.types import TxReceipt

from metascheduler import logs
from metascheduler.agent import heartbeats
from metascheduler.agent.admission import Refusal, admit, time_limit_s
from metascheduler.agent.backends import (
    Backend,
    BackendError,
    BackendJob,
    BackendJobInfo,
    BackendStatus,
    job_name,
    make_backend,
)
from metascheduler.agent.chainview import BlockPace, ChainView, ClockOffset, Head
from metascheduler.agent.decide import Context, Decision, decide, gone
from metascheduler.agent.outbox import Mined, Outbox
from metascheduler.agent.outcomes import EXIT_LOST
from metascheduler.agent.registration import (
    AgentError,
    Registration,
    banned_notice,
    resolve_hardware,
)
from metascheduler.agent.settings import AgentSettings
from metascheduler.agent.shipping import ResultsShipper
from metascheduler.agent.state import AgentState, JobRecord, StateStore
from metascheduler.chain import ChainError, Market
from metascheduler.chain.rpc import retrying
from metascheduler.chain.types import (
    Hardware,
    JobStatus,
    JobView,
    ProviderAction,
    ProviderStatus,
    ProviderStep,
    SkippedItem,
)
from metascheduler.errors import MetaschedulerError, one_line
from metascheduler.keys import refuse_dev_key_off_devnet
from metascheduler.signals import stop_on_signals
from metascheduler.spec import JobSpec

log = logging.getLogger("metascheduler.agent")

#: Seconds between two looks, while the agent waits between rounds, for a new block or a job
#: that ended (an eth_blockNumber call and a waitpid per local job: cheap).
WAKE_CHECK_S = 0.1

#: Right after sending to a chain that may mine each transaction as it comes, how long its
#: receipts are looked for (such a node mines in the background, within milliseconds).
AT_ONCE_S = 0.1

__all__ = ["Agent", "AgentError", "Round", "build", "run", "run_agent_command"]

#: After an expiry the contract skipped (still funded by its clock), wait before trying again.
EXPIRE_RETRY_S = 10.0


@dataclass
class Round:
    """What one round did (returned by ``tick`` for logs and tests)."""

    placed: list[int] = field(default_factory=list)
    submitted: dict[int, str] = field(default_factory=dict)
    steps: list[ProviderStep] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
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
        self.outbox = Outbox(market)
        self.sender = self.outbox.sender
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
        self._registration: Registration | None = None
        #: The provider is banned (for good): it accepts nothing new, and goes on with the jobs
        #: it accepted. Read at start-up, and learnt from an ACCEPT the contract refused.
        self.banned = False
        self._next_heartbeat = 0.0
        self._expire_not_before: dict[int, float] = {}
        # Per round: the head, what every decision shares, the refusals to send and the jobs to
        # queue. The jobs admitted whose ACCEPT is in flight (spec and view, to queue them once
        # it is mined) stay until its transaction is mined or given up.
        self._head = Head(0, "", 0)
        self._clock = ClockOffset()
        self._pace = BlockPace(close_s=1.5 * WAKE_CHECK_S, margin_s=2 * WAKE_CHECK_S)
        self._ctx = Context(self.address, 0, settings.time_limit_grace_s, settings.max_time_limit_s)
        self._accepting: dict[int, tuple[JobSpec, JobView]] = {}
        self._refusals: dict[int, str] = {}
        #: The jobs to queue on the backend once the round's transactions are out.
        self._submitting: list[tuple[JobRecord, JobView, JobSpec]] = []
        #: The head whose placements were read, and the job records read at a head (its hash):
        #: a round the backend woke under the same head reads neither again.
        self._scanned = ""
        self._views_at = ("", dict[int, JobView]())
        #: Ships each job's log and outputs to the API, encrypted to its customer (see
        #: ``shipping``); None without an API.
        self.results: ResultsShipper | None = None
        #: Since when each job's COMPLETE waits for its result digest (monotonic seconds).
        self._digest_wait: dict[int, float] = {}

    @property
    def state(self) -> AgentState:
        if self._state is None:
            raise RuntimeError("Agent.start() first")
        return self._state

    @property
    def registration(self) -> Registration:
        if self._registration is None:
            raise RuntimeError("Agent.start() first")
        return self._registration

    @property
    def hardware(self) -> Hardware:
        return self.registration.hardware

    # ------------------------------------------------------------------ life cycle

    def start(self) -> ProviderStatus:
        """Opens (locks) the state, adopts the backend's jobs, registers the provider if its
        record differs, and returns its standing."""
        self.store.open()
        try:
            self._state = self.store.load(self.market.address, self.address, self.genesis)
            hardware = resolve_hardware(self.settings, self.backend)
            self._registration = Registration(self.settings, self.market, self.chain, hardware)
            self._adopt()
            self.store.save(self.state)
            status = self.register()
            self.banned = status is ProviderStatus.BANNED
            return status
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

    def register(self) -> ProviderStatus:
        """Registers (or updates) the provider when the chain's record differs from the
        settings; returns its standing."""
        return self.registration.register()

    def wait_for_approval(self, stop: threading.Event) -> bool:
        """Blocks until the admin approves the provider (True) or ``stop`` is set (False)."""
        return self.registration.wait_for_approval(stop)

    def resume_results(self) -> None:
        """Ships the results of every job the backend has for this agent. A job queued before
        a restart may have none set up: the agent died between the backend's answer and the
        shipper's record of it, or the job was adopted."""
        if self.results is None:
            return
        for rec in self.state.jobs.values():
            if rec.native_id is not None:
                self.results.track(rec.job_id, rec.native_id)

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
            if job_id in self.state.done:
                continue  # ended here already: its tombstone knows the backend job
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

    # ------------------------------------------------------------------ one round

    def tick(self) -> Round:
        rnd = Round()
        head = self.chain.head()
        if self._head.hash and self.chain.replaced(self._head, head):
            # A reorg, even one above the confirmed block the placement scan watches, may have
            # dropped this agent's transactions: the next nonce is the node's, or the steps
            # sent again wait behind the gap until a receipt times out.
            self.outbox.nonce_in_doubt()
        self._head = head
        self._refusals = {}
        self.outbox.new_round()
        # The contract compares with its block time; a quiet devnet's head lags it, so the
        # chain's time is this host's shifted by the chain's clock offset (never before the
        # head). The backend's times are this host's: they are reported in the chain's clock.
        wall = time.time()
        offset = self._clock.read(head, wall)
        now = max(head.timestamp, int(wall + offset))
        s = self.settings
        self._ctx = Context(
            self.address,
            now,
            s.time_limit_grace_s,
            s.max_time_limit_s,
            clock_offset=offset,
            banned=self.banned,
        )
        # What earlier rounds sent and the chain mined since: the jobs whose ACCEPT it carries
        # are queued on the backend once this round's transactions are out.
        self._submitting = []
        self._collect(rnd, head.number)
        if head.hash != self._scanned:
            # (A round woken by the backend under the same head finds nothing new there.)
            self._scan(head, rnd)
            self._scanned = head.hash
        self.state.purge_done(head.number - self.settings.reorg_rewind_blocks)
        jobs = self.state.jobs
        views = self._views(head, jobs)
        statuses = self._backend_statuses(jobs.values())
        confirmed = self._confirmed_views(jobs, views)
        # A job with a transaction in flight is judged once it is mined (no step twice).
        waiting = self.outbox.busy() | {rec.job_id for rec, _, _ in self._submitting}

        expire: list[int] = []
        for job_id in sorted(jobs):
            if job_id in waiting:
                continue
            rec = jobs[job_id]
            view = views.get(job_id)
            st = statuses.get(rec.native_id) if rec.native_id else None
            decision = decide(
                rec,
                view,
                st,
                self._ctx,
                confirmed=confirmed.get(job_id),
                may_expire=time.monotonic() >= self._expire_not_before.get(job_id, 0.0),
            )
            if self._carry_out(rec, view, decision, rnd):
                expire.append(job_id)

        self.store.save(self.state)  # before anything it promises goes out
        self.outbox.steps(rnd.steps, head.number)
        self._send_refusals()
        if expire:
            self.outbox.expire(expire, head.number)
        if self._submitting:
            # Queued after the round's ACCEPTs went out (the backend may be slow to take
            # them); the jobs it runs at once are STARTed now, in the block after their
            # ACCEPT's.
            first = len(rnd.steps)
            self._start_submitted(self._submit(rnd), rnd)
            self.outbox.steps(rnd.steps[first:], head.number)
            self._send_refusals()
        busy = self.outbox.busy()
        self._accepting = {j: v for j, v in self._accepting.items() if j in busy}
        # A chain that mines each transaction as it comes (a devnet) has mined them already:
        # their jobs are queued now, and what the backend refuses is refused in this round.
        if self._collect(rnd, None):
            if self._submitting or self._refusals:
                self._submit(rnd)
                self._send_refusals()
                self._collect(rnd, None)
            self.store.save(self.state)
        self._maybe_heartbeat(views, statuses, rnd)
        return rnd

    def wait_for_news(self, stop: threading.Event, longest_s: float) -> None:
        """Waits until a block after the last round's head is mined, a backend job ends,
        ``longest_s`` passes or ``stop`` is set.

        A round right after each block is what makes the path to RUNNING short: a placement
        mined in block N is ACCEPTed in N+1, and the round woken by N+1 (the ACCEPT's block,
        when the backend got the job) reports START in N+2. A fixed poll adds up to a poll
        per step. The node is asked only once a block may be due (``BlockPace``).
        """
        deadline = time.monotonic() + longest_s
        news = self.backend.news()
        while not stop.wait(WAKE_CHECK_S) and (now := time.monotonic()) < deadline:
            if self.backend.news() != news:
                return
            if now < self._pace.quiet_until():
                continue  # no block is due yet: the node is not asked
            try:
                number = self.chain.block_number()
            except ChainError:
                return  # the round says what is wrong, and retries
            self._pace.polled(number, time.monotonic())
            if number > self._head.number:
                return

    def _views(self, head: Head, job_ids: Collection[int]) -> dict[int, JobView]:
        """The chain's record of each job, read once per head: under the same head (a round the
        backend woke) the chain is the same, and this agent's transactions since are in flight,
        their jobs not judged. A round reads every job it holds, which grows with them."""
        at, known = self._views_at
        if at != head.hash:
            known = {}
        todo = [j for j in job_ids if j not in known]
        if todo:
            known.update(self.chain.jobs(todo))
        self._views_at = (head.hash, known)
        return {j: known[j] for j in job_ids if j in known}

    def _backend_statuses(self, recs: Iterable[JobRecord]) -> dict[str, BackendJobInfo]:
        natives = [r.native_id for r in recs if r.native_id is not None]
        return self.backend.status(natives) if natives else {}

    def _confirmed_views(
        self, job_ids: Iterable[int], views: dict[int, JobView]
    ) -> dict[int, JobView]:
        """Records, at the confirmed block, of the jobs SCHEDULED here and not yet queued (the
        backend gets a job only once its ACCEPT is that deep), and of the jobs the head's
        record ended or took away (forgotten only once that is as deep: a reorg may undo it)."""
        jobs = self.state.jobs
        waiting, ended = [], []
        for j in job_ids:
            v = views.get(j)
            if gone(v, self._ctx) is not None:
                ended.append(j)
            elif v is not None and v.status is JobStatus.SCHEDULED and jobs[j].native_id is None:
                waiting.append(j)
        c = self.settings.confirmations
        if c == 0:
            # The head's record is the confirmed one: an ending read there is final.
            return {j: views[j] for j in waiting}
        if not waiting and not ended:
            return {}
        return self.chain.jobs(waiting + ended, block=max(0, self._head.number - c))

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
                self.outbox.nonce_in_doubt()
                # Endings the reorg may have undone: each job is judged again from the chain.
                revived = st.revive_all()
                if revived:
                    log.info("reorg: re-checking the jobs it may have revived: %s", revived)
        to = head.number - s.confirmations
        first = s.start_block if st.cursor_block is None else st.cursor_block + 1
        if to < first:
            return
        for job_id, block in self.chain.placements(first, to):
            rec = st.jobs.get(job_id) or st.revive(job_id)
            if rec is None:
                st.jobs[job_id] = JobRecord(job_id, placed_block=block)
                rnd.placed.append(job_id)
            else:
                rec.placed_block = max(rec.placed_block, block)
        st.cursor_block = to
        st.cursor_hash = head.hash if to == head.number else self.chain.block_hash(to)
        self.chain.prefetch_requests(rnd.placed, to)

    # ------------------------------------------------------------------ carrying decisions out

    def _carry_out(self, rec: JobRecord, view: JobView | None, d: Decision, rnd: Round) -> bool:
        """Does what ``d`` says on the backend and queues its steps and refusal for sending.
        Returns whether the job is to be expired on chain."""
        if d.kill is not None and not self._kill(rec, d.kill, rnd):
            return False  # tried again next round
        if d.forget:
            self._forget(rec)
            rnd.dropped.append(rec.job_id)
            return False
        if view is None:
            return False  # gone from the head's record, not yet from the confirmed block's
        if d.rerun:
            log.info("job %d placed here again; its killed backend job never ran", rec.job_id)
            rec.native_id, rec.killed, rec.time_limit_s, rec.lag_s = None, False, None, None
        if d.lag_s is not None:
            rec.lag_s = d.lag_s
        if d.extend_to is not None:
            self._extend(rec, view, d.extend_to, rnd)
        if d.admit:
            spec = self._admit(rec, view)
            if spec is None:
                return False
            if d.submit:
                self._submitting.append((rec, view, spec))
            else:
                self._accepting[rec.job_id] = (spec, view)
        if d.refuse is not None:
            self._refusals[rec.job_id] = d.refuse
        for step in d.steps:
            if step.action is ProviderAction.COMPLETE and step.exit_code == EXIT_LOST:
                log.error(
                    "job %d is RUNNING on chain but its backend job is lost: reporting it "
                    "failed with code %d (lost)",
                    rec.job_id,
                    EXIT_LOST,
                )
        for step in d.steps:
            sent = self._with_result_digest(step)
            if sent is not None:
                rnd.steps.append(sent)
        return d.expire

    def _with_result_digest(self, step: ProviderStep) -> ProviderStep | None:
        """A COMPLETE is to carry the job's result digest, which the shipper knows once the
        job's outputs are stored and its log closed: until then (at most
        ``results.complete_wait_s``, and only while the API answers) the COMPLETE waits for a
        later round. None: not this round."""
        if step.action is not ProviderAction.COMPLETE or self.results is None:
            return step
        digest = self.results.result_digest(step.job_id)
        if digest is not None:
            self._digest_wait.pop(step.job_id, None)
            return step._replace(result_digest=bytes.fromhex(digest.removeprefix("0x")))
        since = self._digest_wait.setdefault(step.job_id, time.monotonic())
        patience = self.settings.results.complete_wait_s
        if self.results.waiting_is_useful(step.job_id) and time.monotonic() - since < patience:
            return None
        log.warning(
            "job %d: completing without a result digest: its results are not all stored (the "
            "API does not answer, or %g s passed); they keep being shipped",
            step.job_id,
            patience,
        )
        self._digest_wait.pop(step.job_id, None)
        return step

    def _forget(self, rec: JobRecord) -> None:
        self.state.retire(rec, self._head.number)
        self.chain.forget(rec.job_id)
        self._expire_not_before.pop(rec.job_id, None)
        self._accepting.pop(rec.job_id, None)

    def _admit(self, rec: JobRecord, view: JobView) -> JobSpec | None:
        """The job's spec if this provider takes it; else its refusal is noted."""
        req = self.chain.request(rec.job_id, rec.placed_block or self._head.number)
        if req is None:
            self._refusals[rec.job_id] = "no JobRequested event found for it"
            return None
        verdict = admit(req, view, self.hardware, self.settings.labels, self.settings.min_run_s)
        if isinstance(verdict, Refusal):
            self._refusals[rec.job_id] = verdict.reason
            return None
        return verdict

    def _submit(self, rnd: Round) -> list[JobRecord]:
        """Queues the jobs of ``_submitting`` on the backend, in one batch: only once the chain
        records this provider's ACCEPT of each. Returns those queued."""
        s = self.settings
        todo = [item for item in self._submitting if item[0].native_id is None]  # never twice
        self._submitting = []
        jobs = [
            BackendJob(
                rec.job_id,
                spec,
                time_limit_s(
                    escrow=view.escrow,
                    price_per_minute=view.price_per_minute,
                    grace_s=s.time_limit_grace_s,
                    lag_s=0,
                    cap_s=s.max_time_limit_s,
                ),
                name=job_name(rec.job_id, self.prefix),
                output_dir=self.results.output_dir(rec.job_id) if self.results else None,
            )
            for rec, view, spec in todo
        ]
        results = self.backend.submit_many(jobs) if jobs else []
        queued = []
        for (rec, view, spec), job, native in zip(todo, jobs, results, strict=True):
            job_id = rec.job_id
            if isinstance(native, BackendError):
                if native.command is not None and native.returncode is None:
                    # The command did not answer or is missing: the cluster's trouble, not
                    # the job's.
                    log.warning("job %d not submitted this round, will retry: %s", job_id, native)
                else:
                    log.warning("job %d refused by the backend: %s", job_id, native)
                    self._refusals[job_id] = f"the backend refused it: {_short(native)}"
                continue
            rec.native_id = native
            if self.results is not None:
                self.results.note(job_id, f"queued on {self.backend.name} as {native}")
                self.results.track(job_id, native)
            rec.time_limit_s, rec.escrow, rec.price = (
                job.time_limit_s,
                view.escrow,
                view.price_per_minute,
            )
            rnd.submitted[job_id] = native
            queued.append(rec)
            log.info(
                "job %d (%s) queued on %s as %s with a time limit of %d s",
                job_id,
                spec.name,
                self.backend.name,
                native,
                job.time_limit_s,
            )
        if queued:
            # Saved at once: a crash from here on finds the jobs here (or, for a crash during
            # the batch, by adopt()), never submits them twice.
            self.store.save(self.state)
        return queued

    def _start_submitted(self, recs: list[JobRecord], rnd: Round) -> None:
        """The steps of jobs just queued (a START for each the backend runs at once)."""
        for rec, view, decision in self._decide_again(recs):
            self._carry_out(rec, view, decision, rnd)

    def _decide_again(
        self, recs: list[JobRecord]
    ) -> Iterator[tuple[JobRecord, JobView | None, Decision]]:
        """Each job's decision on a fresh read of its record and its backend job."""
        if not recs:
            return
        views = self.chain.jobs(r.job_id for r in recs)
        confirmed = self._confirmed_views([r.job_id for r in recs], views)
        statuses = self._backend_statuses(recs)
        for rec in recs:
            view = views.get(rec.job_id)
            st = statuses.get(rec.native_id) if rec.native_id else None
            yield rec, view, decide(rec, view, st, self._ctx, confirmed=confirmed.get(rec.job_id))

    def _extend(self, rec: JobRecord, view: JobView, want: int, rnd: Round) -> None:
        assert rec.native_id is not None
        try:
            self.backend.extend(rec.native_id, want)
        except BackendError as exc:
            log.warning("job %d: could not raise its time limit to %d s: %s", rec.job_id, want, exc)
            return
        log.info(
            "job %d: time limit of backend job %s raised from %s to %d s (escrow %d units)",
            rec.job_id,
            rec.native_id,
            rec.time_limit_s,
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
        if self.results is not None:
            self.results.note(rec.job_id, f"killed: {why}")
        log.info("job %d: killed backend job %s: %s", rec.job_id, rec.native_id, why)
        return True

    # ------------------------------------------------------------------ sending

    def _collect(self, rnd: Round, head: int | None) -> bool:
        """Acts on the transactions in flight that are mined (``Outbox.mined``; with no head,
        right after sending, ``mined_at_once`` unless the chain is known to mine on a clock):
        notes the jobs whose ACCEPT was carried out for queuing, re-reads
        those whose step was skipped, notes refusals, kills what an expiry ended. Returns
        whether any was."""
        if head is not None:
            mined, given_up = self.outbox.mined(head)
        elif self._pace.on_a_clock:
            return False  # mined in a later block: the round it wakes collects them
        else:
            mined, given_up = self.outbox.mined_at_once(AT_ONCE_S)
        for sent in given_up:
            for job_id in sent.job_ids:
                self._accepting.pop(job_id, None)
        for done in mined:
            if done.steps:
                self._on_batch(done, rnd)
            elif done.sent.reason is not None:
                rnd.refused[done.sent.job_ids[0]] = done.sent.reason
                # Back to PENDING, and still tracked until that is as deep as the
                # confirmations (``decide``, rule 4): a reorg that drops the refusal gets it
                # sent again. A new placement here goes on from this record (a backend job it
                # had is never run again).
            else:
                self._on_expiry(done, rnd)
        return bool(mined)

    def _on_batch(self, batch: Mined, rnd: Round) -> None:
        rnd.skipped.extend(batch.skipped)
        self._check_standing(batch)
        done = {s.job_id for s in batch.done if s.action is ProviderAction.ACCEPT}
        accepted = []
        for step in batch.steps:
            admitted = self._accepting.pop(step.job_id, None)
            if admitted is not None and step.job_id in done:
                accepted.append((step.job_id, *admitted))
        self._submit_accepted(accepted, batch.receipt)
        self._recheck({s.job_id for s in batch.skipped}, rnd)

    def _submit_accepted(
        self, accepted: list[tuple[int, JobSpec, JobView]], receipt: TxReceipt
    ) -> None:
        """Queues (``_submitting``) the jobs whose ACCEPT this receipt carries, without waiting
        for the next round, when no confirmations are asked for and its block is still the
        chain's."""
        if not accepted or self.settings.confirmations > 0:
            return
        block, block_hash = int(receipt["blockNumber"]), receipt["blockHash"].to_0x_hex()
        head = self._head
        canonical = head.hash if block == head.number else self.chain.block_hash(block)
        if canonical != block_hash:
            todo = [job_id for job_id, _, _ in accepted]
            log.warning("block %d of the ACCEPT of jobs %s was replaced: next round", block, todo)
            return
        for job_id, spec, view in accepted:
            rec = self.state.jobs.get(job_id)
            if rec is not None:
                self._submitting.append((rec, view, spec))

    def _check_standing(self, batch: Mined) -> None:
        """An ACCEPT the contract skipped may say that the provider was banned while the agent
        ran (one read then, rare; none per round): from then on it accepts nothing (``decide``,
        rule 8), and its accepted jobs go on."""
        skipped = {s.position for s in batch.skipped}
        refused_accept = any(
            k in skipped and step.action is ProviderAction.ACCEPT
            for k, step in enumerate(batch.steps)
        )
        if self.banned or not refused_accept:
            return
        try:
            status, _, _ = self.market.get_provider(self.address)
        except ChainError as exc:
            # The batch is mined: the round goes on, and the next refused ACCEPT reads again.
            log.warning("could not read this provider's standing: %s", exc)
            return
        if status is ProviderStatus.BANNED:
            self.banned = True
            self._ctx = replace(self._ctx, banned=True)
            log.warning("%s", banned_notice(self.address, self.market.address))

    def _recheck(self, job_ids: set[int], rnd: Round) -> None:
        """Jobs whose step was skipped changed meanwhile (cancelled, say): the chain's endings
        and take-backs are acted on now, the rest waits for the next round."""
        recs = [self.state.jobs[j] for j in sorted(job_ids) if j in self.state.jobs]
        for rec, view, decision in self._decide_again(recs):
            if decision.forget or decision.kill is not None:
                self._carry_out(rec, view, decision, rnd)

    def _send_refusals(self) -> None:
        for job_id, reason in sorted(self._refusals.items()):
            self.outbox.refuse(job_id, reason, self._head.number)
        self._refusals = {}

    def _on_expiry(self, expiry: Mined, rnd: Round) -> None:
        skipped = {item.job_id: item.error for item in expiry.skipped}
        for job_id in expiry.sent.job_ids:
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
        self, views: dict[int, JobView], statuses: dict[str, BackendJobInfo], rnd: Round
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
            if st.status is BackendStatus.RUNNING:
                running.append(job_id)
            elif st.status is BackendStatus.QUEUED:
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
    account = settings.account()
    w3 = settings.web3()
    market = Market(
        w3,
        address,
        account,
        rpc_deadline_s=settings.rpc_deadline_s,
        receipt_timeout_s=settings.receipt_timeout_s,
    )
    settings.check_chain(market.sender_or_fail().chain_id)
    refuse_dev_key_off_devnet(account, market.sender_or_fail().chain_id)
    genesis = retrying(
        "reading the genesis block", lambda: w3.eth.get_block(0), rpc_url=settings.rpc_url
    )
    prefix = settings.name_prefix(bytes(genesis["hash"]))
    backend = make_backend(settings.backend, **settings.backend_options(prefix))
    agent = Agent(
        settings, market, backend, genesis=genesis["hash"].to_0x_hex(), name_prefix=prefix
    )
    if settings.api_url and settings.results.enabled:
        sender = market.sender_or_fail()
        agent.results = ResultsShipper(settings, market, sender.account, sender.chain_id, backend)
    return agent


def run(settings: AgentSettings, stop: threading.Event | None = None) -> None:
    """Runs the agent until ``stop`` is set or SIGINT/SIGTERM arrives."""
    stop = stop or threading.Event()
    agent = build(settings)
    with stop_on_signals(stop, log, "this round; jobs keep running on the backend"):
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
            if agent.results is not None:
                agent.resume_results()
                agent.results.start()
            while not stop.is_set():
                try:
                    agent.tick()
                except (ChainError, BackendError) as exc:
                    log.error("round failed, retrying in %g s: %s", settings.poll_interval_s, exc)
                agent.wait_for_news(stop, settings.poll_interval_s)
        finally:
            if agent.results is not None:
                agent.results.stop()
            agent.close()
            log.info("agent stopped; jobs still running on the backend are adopted at restart")


def run_agent_command(config_path: str | None) -> int:
    """``metascheduler agent run [--config FILE]``: exit 0 on a clean stop, else the exit code of
    the error that stopped it (`metascheduler.errors`: 2 settings or key, 3 the RPC does not
    answer, 1 anything else the agent cannot go on after)."""
    logs.setup("INFO")
    try:
        settings = AgentSettings.load(config_path)
        logs.setup(settings.log_level)
        run(settings)
    except MetaschedulerError as exc:
        # The project's errors never quote a secret (config.py, keys.py).
        log.error("agent stopped: %s", one_line(exc))
        return exc.exit_code
    return 0
