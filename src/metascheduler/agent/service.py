"""The provider agent: takes the jobs placed on its provider, runs them on its backend, and
reports every step on chain.

One round (``Agent.tick``), every ``poll_interval_s``:

1. Read ``JobPlaced`` logs filtered on this provider's address, from a persisted block cursor
   (rewound when the chain reorganised under it). New job ids join the tracked set.
2. Read the stored record of every tracked job (``getJob``, in JSON-RPC batches) and the
   backend's status of every backend job (one call). The chain is the truth about a job; the
   backend is the truth about the process.
3. Decide per job: admit a new placement (spec from its ``JobRequested`` event) and ACCEPT
   it, or refuse it with a reason; queue it on the backend once the chain shows it SCHEDULED
   here; report START and COMPLETE as the backend moves; expire and kill a job whose escrow is
   spent; kill a job the chain ended (cancelled, out of credits) or took away; extend the
   backend's time limit after a top-up.
4. Send all ACCEPT/START/COMPLETE steps in one ``providerBatch``; jobs whose ACCEPT is mined
   in a block still canonical are queued on the backend at once (with ``confirmations`` = 0;
   otherwise in the round that sees the ACCEPT buried that deep). Items the contract skipped
   are re-read at once and acted on (a job cancelled meanwhile is killed).
5. Save the state; send a signed heartbeat when one is due.

Never run twice: a job goes to the backend only after the chain records this provider's
ACCEPT, so a placement the oracle reclaims (an ACCEPT dropped or stuck) never ran here; a job
taken away is killed in the round that sees it. Nothing is remembered as "reported": every
round derives the steps to send from the chain and the backend, so steps a reorg undid are sent
again. A job the agent is done with keeps a tombstone (its backend id) while a reorg can still
bring it back, and is then matched with its backend job again, never resubmitted.

Never stalled: each receipt is awaited ``receipt_timeout_s`` at most; a send that fails or times
out, or a reorg, re-reads the nonce from the node and ends the round's sending.

Restart-safe: a backend id is saved right after submission; at start-up ``Backend.adopt()``
fills in what the state file lacks (the agent died between the two), and the first round
reconciles both views (see ``outcomes`` for the codes of lost jobs). Jobs keep running on the
backend while the agent is down.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field

from web3.types import TxReceipt

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
from metascheduler.chain.errors import RevertError
from metascheduler.chain.rpc import connect, retrying
from metascheduler.chain.types import (
    Hardware,
    JobStatus,
    JobView,
    Prices,
    ProviderAction,
    ProviderStatus,
)
from metascheduler.commands import APPROVE_PROVIDER
from metascheduler.config import SettingsError
from metascheduler.keys import KeyLoadError, load_account, refuse_dev_key_off_devnet
from metascheduler.signals import stop_on_signals
from metascheduler.spec import JobSpec

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
        # Per round: the head, jobs admitted whose ACCEPT goes out now (spec and view), the
        # records of jobs waiting to be queued read at the confirmed block, and whether the
        # round may still send (a failed or timed-out send ends the round's sending).
        self._head = Head(0, "", 0)
        self._accepting: dict[int, tuple[JobSpec, JobView]] = {}
        self._deep: dict[int, JobView] = {}
        self._may_send = True
        # Set by a failed send or a reorg: the nonce is re-read before the next send, and
        # again before each one until a send goes through (a transaction that timed out may
        # still sit in the node's pool, or be dropped from it later).
        self._nonce_suspect = True

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
                    "waiting for the admin to approve %s on market %s (%s)",
                    self.address,
                    self.market.address,
                    APPROVE_PROVIDER.format(provider=self.address),
                )
                last_log = time.monotonic()
            stop.wait(self.settings.poll_interval_s)
        return False

    # ------------------------------------------------------------------ one round

    def tick(self) -> Round:
        rnd = Round()
        head = self.chain.head()
        self._head = head
        self._accepting = {}
        self._may_send = True
        self._scan(head, rnd)
        self.state.purge_done(head.number - self.settings.reorg_rewind_blocks)
        jobs = self.state.jobs
        views = self.chain.jobs(jobs) if jobs else {}
        natives = [r.native_id for r in jobs.values() if r.native_id is not None]
        statuses = self.backend.status(natives) if natives else {}
        self._deep = self._confirmed_views(views, head)
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

        self._send_steps(rnd, refusals)
        self._send_refusals(refusals, rnd)
        self._send_expiries(expire, rnd)
        self.store.save(self.state)
        self._maybe_heartbeat(views, statuses, rnd)
        return rnd

    def _ours(self, view: JobView) -> bool:
        return view.provider.lower() == self.address.lower()

    def _confirmed_views(self, views: dict[int, JobView], head: Head) -> dict[int, JobView]:
        """Records, at the confirmed block, of the jobs SCHEDULED here and not yet queued: the
        backend gets a job only once its ACCEPT is that deep."""
        waiting = [
            j
            for j, v in views.items()
            if v.status is JobStatus.SCHEDULED
            and self._ours(v)
            and self.state.jobs[j].native_id is None
        ]
        c = self.settings.confirmations
        if not waiting or c == 0:
            return {j: views[j] for j in waiting}
        return self.chain.jobs(waiting, block=max(0, head.number - c))

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
                # Transactions of the replaced blocks may be gone: the next nonce is the node's.
                self._nonce_suspect = True
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
        ours = self._ours(view)
        status = view.status
        # PENDING again or placed elsewhere (reclaimed, refused, or a reorg dropped the
        # placement or the ACCEPT before the oracle re-placed it): killed here at once.
        if not ours or status.terminal or status is JobStatus.PENDING:
            self._retire(rec, view, st, rnd)
        elif status is JobStatus.META_SCHEDULED:
            self._on_placed(rec, view, st, head, rnd, refusals)
        elif status is JobStatus.SCHEDULED:
            self._on_scheduled(rec, view, st, head, rnd, refusals)
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
        self._forget(rec)
        rnd.dropped.append(rec.job_id)

    def _forget(self, rec: JobRecord) -> None:
        self.state.retire(rec, self._head.number)
        self.chain.forget(rec.job_id)
        self._expire_not_before.pop(rec.job_id, None)
        self._accepting.pop(rec.job_id, None)

    def _on_placed(
        self,
        rec: JobRecord,
        view: JobView,
        st: BackendStatus | None,
        head: Head,
        rnd: Round,
        refusals: dict[int, str],
    ) -> None:
        never_ran = st is not None and st.state is B.CANCELLED and st.started_at is None
        if rec.native_id is not None and rec.killed and never_ran:
            # Killed here before it ever started (taken away while queued), now placed here
            # again: it never ran, so it may run now.
            log.info("job %d placed here again; its killed backend job never ran", rec.job_id)
            rec.native_id, rec.killed, rec.time_limit_s, rec.lag_s = None, False, None, None
        if rec.native_id is None:
            # ACCEPT first; the backend gets the job once the chain shows it SCHEDULED here.
            spec = self._admit(rec, view, head, refusals)
            if spec is not None:
                self._accepting[rec.job_id] = (spec, view)
                rnd.steps.append((rec.job_id, ProviderAction.ACCEPT, 0))
            return
        # Known to the backend already (a reorg undid the ACCEPT, or an adopted job): never
        # submit again; catch the chain up with the backend.
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
        head: Head,
        rnd: Round,
        refusals: dict[int, str],
    ) -> None:
        if rec.native_id is None:
            deep = self._deep.get(rec.job_id)
            if deep is None or not self._ours(deep) or deep.status is not JobStatus.SCHEDULED:
                return  # the ACCEPT is not buried deep enough yet
            spec = self._admit(rec, view, head, refusals)
            if spec is not None:
                self._submit(rec, view, spec, rnd, refusals)
            return
        if st is None:
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
        funded_until = view.since + funded_seconds(view.escrow, view.price_per_minute)
        spent = now >= funded_until
        may_expire = time.monotonic() >= self._expire_not_before.get(rec.job_id, 0.0)
        if rec.native_id is None or st is None:
            if spent:
                # Out of credits, not lost (e.g. a reorg undid its expiry after the agent
                # forgot it): the chain's ending, not the provider's report.
                if may_expire:
                    expire.append(rec.job_id)
                return
            log.error(
                "job %d is RUNNING on chain but no backend job is known for it: reporting it "
                "failed with code %d (lost)",
                rec.job_id,
                EXIT_LOST,
            )
            rnd.steps.append((rec.job_id, ProviderAction.COMPLETE, EXIT_LOST))
            return
        if st.state.is_terminal:
            # Killed at its time limit, or by the agent at its expiry (which a reorg undid):
            # out of credits, not the provider's report.
            if spent and (st.state is B.TIMEOUT or rec.killed):
                if may_expire:
                    expire.append(rec.job_id)
            else:
                rnd.steps.append((rec.job_id, ProviderAction.COMPLETE, exit_code(st)))
            return
        if spent:
            if may_expire:
                expire.append(rec.job_id)
            return
        self._extend(rec, view, st, rnd)

    # ------------------------------------------------------------------ backend actions

    def _admit(
        self, rec: JobRecord, view: JobView, head: Head, refusals: dict[int, str]
    ) -> JobSpec | None:
        """The job's spec if this provider takes it; else its refusal is noted."""
        req = self.chain.request(rec.job_id, rec.placed_block or head.number)
        if req is None:
            refusals[rec.job_id] = "no JobRequested event found for it"
            return None
        assert self.hardware is not None
        verdict = admit(req, view, self.hardware, self.settings.labels)
        if isinstance(verdict, Refusal):
            refusals[rec.job_id] = verdict.reason
            return None
        return verdict

    def _submit(
        self, rec: JobRecord, view: JobView, spec: JobSpec, rnd: Round, refusals: dict[int, str]
    ) -> bool:
        """Queues the job on the backend: only once the chain records this provider's ACCEPT."""
        job_id = rec.job_id
        if rec.native_id is not None:
            return False  # never twice
        s = self.settings
        limit = time_limit_s(
            view.escrow, view.price_per_minute, s.time_limit_grace_s, 0, s.max_time_limit_s
        )
        job = BackendJob(job_id, spec, limit, name=job_name(job_id, self.prefix))
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
        # Saved at once: a crash from here on finds the job here (or by adopt()), never
        # submits it twice.
        self.store.save(self.state)
        rnd.submitted[job_id] = native
        log.info(
            "job %d (%s) queued on %s as %s with a time limit of %d s",
            job_id,
            spec.name,
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

    def _send_failed(self, what: str, exc: ChainError) -> None:
        """A send failed: the nonce is re-read before the next one and, unless the contract
        merely refused it, nothing more is sent this round (it would wait behind the same
        trouble, and a round never blocks longer than one receipt timeout)."""
        self._nonce_suspect = True
        if isinstance(exc, RevertError):
            log.error("%s was refused by the contract (re-read next round): %s", what, exc)
        else:
            log.error("%s failed; the rest of this round's sending waits: %s", what, exc)
            self._may_send = False

    def _sent(self) -> None:
        self._nonce_suspect = False

    def _can_send(self, what: str) -> bool:
        """Whether this round may still send; re-reads the nonce first when it is in doubt:
        after a reorg or a failed send the agent's own count may point past a transaction that
        is gone, and every later one would wait behind the gap."""
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

    def _send_steps(self, rnd: Round, refusals: dict[int, str]) -> None:
        steps = rnd.steps
        for i in range(0, len(steps), MAX_STEPS_PER_TX):
            chunk = steps[i : i + MAX_STEPS_PER_TX]
            what = f"reporting {len(chunk)} job steps"
            if not self._can_send(what):
                return
            try:
                receipt = self.market.provider_batch(chunk)
            except ChainError as exc:
                self._send_failed(what, exc)
                continue
            self._sent()
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
            accepted = [j for j, action, _ in done if action is ProviderAction.ACCEPT]
            self._submit_accepted(accepted, receipt, rnd, refusals)
            self._recheck({job_id for _, job_id, _ in skipped}, rnd)

    def _submit_accepted(
        self, job_ids: list[int], receipt: TxReceipt, rnd: Round, refusals: dict[int, str]
    ) -> None:
        """Queues the jobs whose ACCEPT this receipt carries, without waiting for the next
        round, when no confirmations are asked for and its block is still the chain's."""
        todo = [j for j in job_ids if j in self._accepting]
        if not todo or self.settings.confirmations > 0:
            return
        block, block_hash = int(receipt["blockNumber"]), receipt["blockHash"].to_0x_hex()
        if self.chain.block_hash(block) != block_hash:
            log.warning("block %d of the ACCEPT of jobs %s was replaced: next round", block, todo)
            return
        for job_id in todo:
            spec, view = self._accepting.pop(job_id)
            rec = self.state.jobs.get(job_id)
            if rec is not None:
                self._submit(rec, view, spec, rnd, refusals)

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
            if view is None or view.status.terminal or not self._ours(view):
                st = statuses.get(rec.native_id) if rec.native_id else None
                self._retire(rec, view, st, rnd)

    def _send_refusals(self, refusals: dict[int, str], rnd: Round) -> None:
        for job_id, reason in sorted(refusals.items()):
            what = f"refusing job {job_id}"
            if not self._can_send(what):
                return
            try:
                self.market.refuse_job(job_id, reason)
            except ChainError as exc:
                self._send_failed(what, exc)
                continue
            self._sent()
            log.info("job %d refused: %s", job_id, reason)
            rnd.refused[job_id] = reason
            # Back to PENDING: a new placement on this provider starts afresh (a tombstone
            # remembers a backend job it had, which is never run again).
            rec = self.state.jobs.get(job_id)
            if rec is not None:
                self._forget(rec)

    def _send_expiries(self, job_ids: list[int], rnd: Round) -> None:
        what = f"expiring jobs {job_ids}"
        if not job_ids or not self._can_send(what):
            return
        try:
            receipt = self.market.expire_jobs(job_ids)
        except ChainError as exc:
            self._send_failed(what, exc)
            return
        self._sent()
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
    return Agent(settings, market, backend, genesis=genesis["hash"].to_0x_hex(), name_prefix=prefix)


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
            while not stop.is_set():
                try:
                    agent.tick()
                except (ChainError, BackendError) as exc:
                    log.error("round failed, retrying in %g s: %s", settings.poll_interval_s, exc)
                stop.wait(settings.poll_interval_s)
        finally:
            agent.close()
            log.info("agent stopped; jobs still running on the backend are adopted at restart")


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
        # SettingsError never quotes a value (config.py), so a misspelt key field is safe here.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        run(settings)
    except (SettingsError, KeyLoadError, StateError, AgentError, BackendError, ChainError) as exc:
        log.error("agent stopped: %s", exc)
        return 1
    return 0
