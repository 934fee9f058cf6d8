"""What the agent does about one job this round, decided from the chain's record of the job, the
backend's view of it, and what the agent remembers of it.

``decide`` is pure: no I/O, no clock, nothing changed. The service reads the chain and the
backend, calls it for every tracked job, and carries the decision out. The rules it keeps:

Never run a job twice.
  1. The backend gets a job (``submit``) only once the chain records this provider's ACCEPT,
     buried ``confirmations`` deep (``confirmed`` is the record at that depth), and only if no
     backend job is known for it. A placement the oracle reclaims before that never ran here.
     With ``confirmations`` = 0 the service also submits right after the ACCEPT's receipt, if
     its block is still the chain's: the same rule, read from the receipt.
  2. A job that has a backend job is never submitted again. A reorg that undoes its ACCEPT gets
     the ACCEPT sent again and the chain caught up with the backend job; a backend job that was
     cancelled or lost before the chain saw it start makes the agent refuse the job.
  3. The one exception: a backend job the agent killed before it ever started (the job was
     taken away while queued) may be replaced when the job is placed here again (``rerun``).
  4. A job the chain ended, gave back (PENDING), placed elsewhere, or does not know is killed
     on the backend at once, and forgotten once the kill went through and the record at the
     confirmed block (``confirmed``) says so too: until then a reorg may undo the ending (drop
     the agent's COMPLETE, say), and the job, still tracked, gets its step sent again.

Never bill for nothing, never lose a report.
  5. START when the backend runs the job; START and COMPLETE in one go when it ended between two
     rounds. A START carries the backend's start and a COMPLETE its end, in the chain's clock
     (``Context.clock_offset``): the contract meters from and bills up to them, so a job that
     ran between two rounds, or whose report waited, is billed its run. A RUNNING job the
     backend lost is reported FAILED with ``EXIT_LOST``, billed up to the block.
  6. A RUNNING job whose escrow is spent is expired (OUT_OF_CREDITS), not reported: also when
     the backend killed it at its time limit, or the agent killed it at an expiry a reorg undid.
  7. The backend's time limit follows the escrow: raised after a top-up, and once for the lag of
     the chain's start behind the backend's (both in the chain's clock: the contract clamps a
     start to the acceptance at the earliest).
  8. A banned provider accepts nothing new (the contract would refuse the ACCEPT): a placement
     waits for the oracle, which takes it back at once. Every job it accepted before the ban is
     submitted, started, completed, expired or killed as usual, so that its compute is paid.

Nothing is remembered as "reported": each round derives the steps from the chain and the
backend, so a step a reorg undid is sent again: the job is still tracked, since it is forgotten
only once its ending is confirmed (rule 4). So is a refusal: a refused job is PENDING on chain,
"no longer placed on this provider", and forgotten only once that is confirmed too; a reorg
that drops the refusal shows it placed here again, and the admission or the backend refuses it
again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from metascheduler.agent.admission import time_limit_s
from metascheduler.agent.backends import BackendJobInfo, BackendStatus
from metascheduler.agent.outcomes import EXIT_LOST, exit_code
from metascheduler.agent.state import JobRecord
from metascheduler.billing import funded_seconds
from metascheduler.chain.types import AT_NOW, JobStatus, JobView, ProviderAction, ProviderStep

B = BackendStatus

#: A job's time limit is raised for a newly measured start lag only when it adds this much.
LAG_TOLERANCE_S = 10
#: Longest start lag (chain start behind backend start) believed; more is a clock problem.
MAX_LAG_S = 24 * 3600


@dataclass(frozen=True)
class Context:
    """What every decision of a round shares."""

    #: This provider's address.
    provider: str
    #: The chain's time as the contract will see it (Unix seconds).
    now: int
    #: Added to the time limit the escrow pays for, and the cap on that limit.
    grace_s: int
    max_time_limit_s: int
    #: How far the chain's clock runs ahead of this host's (seconds; negative: behind), added
    #: to the backend's times, which are this host's, to report them in the chain's clock. An
    #: error in it is bounded by the contract: a start no earlier than the acceptance, an end no
    #: earlier than the start, neither later than the block.
    clock_offset: float = 0.0
    #: The provider is banned: it accepts nothing new (rule 8).
    banned: bool = False

    def ours(self, view: JobView) -> bool:
        return view.provider.lower() == self.provider.lower()

    def started(self, st: BackendJobInfo) -> int:
        """The backend's start in the chain's clock (rounded up: the customer's favour), or
        "now" when the backend does not say."""
        if st.started_at is None:
            return AT_NOW
        return math.ceil(st.started_at + self.clock_offset)

    def ended(self, st: BackendJobInfo) -> int:
        """The backend's end in the chain's clock (rounded down), or "now"."""
        if st.ended_at is None:
            return AT_NOW
        return math.floor(st.ended_at + self.clock_offset)


@dataclass(frozen=True)
class Decision:
    """What to do about one job. The empty decision means: nothing this round (wait)."""

    #: Steps to report in this round's ``providerBatch``, in order.
    steps: tuple[ProviderStep, ...] = ()
    #: The job's spec must pass admission first; if it does not, the job is refused with the
    #: admission's reason instead of the ACCEPT or the submission.
    admit: bool = False
    #: Queue the job on the backend (after admission).
    submit: bool = False
    #: Refuse the placement (``refuseJob``) with this reason in words.
    refuse: str | None = None
    #: Expire the job on chain (OUT_OF_CREDITS); its backend job is killed once that is mined.
    expire: bool = False
    #: Kill the backend job, for this reason in words.
    kill: str | None = None
    #: Stop tracking the job (after the kill, if any, went through).
    forget: bool = False
    #: The killed backend job never started: drop it, the job may run afresh here.
    rerun: bool = False
    #: The start lag just measured (seconds), to remember.
    lag_s: int | None = None
    #: Raise the backend's time limit to this many seconds.
    extend_to: int | None = None

    @property
    def actions(self) -> tuple[str, ...]:
        """The decision in words, in the order the service carries it out (for tests and
        logs): e.g. ``("accept", "start", "complete 0")``."""
        out: list[str] = []
        if self.rerun:
            out.append("rerun")
        if self.kill is not None:
            out.append("kill")
        if self.forget:
            out.append("forget")
        if self.admit:
            out.append("admit")
        if self.submit:
            out.append("submit")
        for step in self.steps:
            name = step.action.name.lower()
            is_complete = step.action is ProviderAction.COMPLETE
            out.append(f"{name} {step.exit_code}" if is_complete else name)
        if self.extend_to is not None:
            out.append("extend")
        if self.refuse is not None:
            out.append("refuse")
        if self.expire:
            out.append("expire")
        return tuple(out)


WAIT = Decision()


def decide(
    rec: JobRecord,
    view: JobView | None,
    backend: BackendJobInfo | None,
    ctx: Context,
    *,
    confirmed: JobView | None = None,
    may_expire: bool = True,
) -> Decision:
    """What to do about one job.

    ``rec`` is what the agent remembers of it; ``view`` the chain's record (None: no such job on
    this chain); ``backend`` the backend's status of ``rec.native_id`` (None when it has no
    backend job); ``confirmed`` the chain's record at the confirmed block (read only for jobs
    SCHEDULED here and not submitted yet, and for jobs ``gone`` from here; None when the job is
    not known there, or with no confirmations asked for: the latest record is final);
    ``may_expire`` is False while an expiry the contract skipped waits before it is tried
    again.
    """
    why = gone(view, ctx)
    if why is not None:
        # Forgotten only once the ending is as deep as the agent's confirmations (None: the
        # job is not known there either, or no confirmations are asked for).
        buried = confirmed is None or gone(confirmed, ctx) is not None
        return _retire(rec, backend, why, forget=buried)
    assert view is not None  # gone() says why a job the chain does not know is not here
    status = view.status
    if status is JobStatus.META_SCHEDULED:
        return WAIT if ctx.banned else _placed(rec, view, backend, ctx)
    if status is JobStatus.SCHEDULED:
        return _scheduled(rec, view, backend, ctx, confirmed)
    return _running(rec, view, backend, ctx, may_expire)


def gone(view: JobView | None, ctx: Context) -> str | None:
    """Why the job is no longer this provider's to run, in words; None while it is."""
    if view is None:
        # No such job on this chain (a devnet restarted under an old backend job).
        return "not a job on this chain"
    status = view.status
    ours = ctx.ours(view)
    if status.terminal or (ours and status is JobStatus.PENDING):
        return f"{status.name} on chain"
    if not ours or status is JobStatus.PENDING:
        # Given back or placed elsewhere (reclaimed, refused, or a reorg dropped the placement
        # or the ACCEPT before the oracle placed it again).
        return "no longer placed on this provider"
    return None


def _retire(rec: JobRecord, st: BackendJobInfo | None, why: str, *, forget: bool) -> Decision:
    alive = rec.native_id is not None and st is not None and not st.status.is_terminal
    return Decision(kill=f"it is {why}" if alive else None, forget=forget)


def _placed(rec: JobRecord, view: JobView, st: BackendJobInfo | None, ctx: Context) -> Decision:
    accept = (ProviderStep(view.job_id, ProviderAction.ACCEPT),)
    never_ran = st is not None and st.status is B.CANCELLED and st.started_at is None
    if rec.native_id is not None and rec.killed and never_ran:
        return Decision(rerun=True, admit=True, steps=accept)
    if rec.native_id is None:
        # ACCEPT first; the backend gets the job once the chain shows it SCHEDULED here.
        return Decision(admit=True, steps=accept)
    # Known to the backend already (a reorg undid the ACCEPT, or an adopted job): never
    # submitted again; the chain catches up with the backend.
    if st is not None and st.status in (B.CANCELLED, B.LOST):
        return Decision(refuse=f"its backend job {rec.native_id} was {st.status.value.lower()}")
    progress = _progress(rec, view, st, ctx)
    return Decision(
        steps=accept + progress.steps, lag_s=progress.lag_s, extend_to=progress.extend_to
    )


def _scheduled(
    rec: JobRecord,
    view: JobView,
    st: BackendJobInfo | None,
    ctx: Context,
    confirmed: JobView | None,
) -> Decision:
    if rec.native_id is None:
        deep = confirmed
        if deep is None or not ctx.ours(deep) or deep.status is not JobStatus.SCHEDULED:
            return WAIT  # the ACCEPT is not buried deep enough yet
        return Decision(admit=True, submit=True)
    if st is None:
        return Decision(refuse="the backend has no job for it (lost before it started)")
    if st.status in (B.CANCELLED, B.LOST):
        ended = st.status.value.lower()
        return Decision(refuse=f"its backend job {rec.native_id} was {ended} before it started")
    return _progress(rec, view, st, ctx)


def _progress(rec: JobRecord, view: JobView, st: BackendJobInfo | None, ctx: Context) -> Decision:
    """START when the backend runs the job; START and COMPLETE if it already ended (it ran
    between two rounds: the chain meters nothing for it)."""
    if st is None or st.status in (B.QUEUED, B.UNKNOWN):
        return _extension(rec, view, st, ctx)
    start = ProviderStep(view.job_id, ProviderAction.START, at=ctx.started(st))
    if st.status.is_terminal:
        return Decision(steps=(start, _complete(view, st, ctx)))
    ext = _extension(rec, view, st, ctx)
    return Decision(steps=(start,), lag_s=ext.lag_s, extend_to=ext.extend_to)


def _running(
    rec: JobRecord, view: JobView, st: BackendJobInfo | None, ctx: Context, may_expire: bool
) -> Decision:
    spent = ctx.now >= view.since + funded_seconds(escrow=view.escrow, price=view.price_per_minute)
    expire = Decision(expire=True) if may_expire else WAIT
    if rec.native_id is None or st is None:
        if spent:
            # Out of credits, not lost (a reorg undid its expiry after the agent forgot it,
            # say): the chain's ending, not the provider's report.
            return expire
        return Decision(steps=(ProviderStep(view.job_id, ProviderAction.COMPLETE, EXIT_LOST),))
    if st.status.is_terminal:
        # Killed at its time limit, or by the agent at its expiry (which a reorg undid): out
        # of credits, not the provider's report.
        if spent and (st.status is B.TIMEOUT or rec.killed):
            return expire
        return Decision(steps=(_complete(view, st, ctx),))
    if spent:
        return expire
    return _extension(rec, view, st, ctx)


def _complete(view: JobView, st: BackendJobInfo, ctx: Context) -> ProviderStep:
    """The COMPLETE of a job the backend ended: its exit code, billed up to its end."""
    return ProviderStep(view.job_id, ProviderAction.COMPLETE, exit_code(st), at=ctx.ended(st))


def _extension(rec: JobRecord, view: JobView, st: BackendJobInfo | None, ctx: Context) -> Decision:
    """The backend's time limit raised to what the escrow now pays for (after a top-up), plus
    the lag of the chain's start behind the backend's once it is known."""
    if rec.native_id is None or st is None or st.status.is_terminal:
        return WAIT
    lag, new_lag = rec.lag_s, None
    if view.status is JobStatus.RUNNING and rec.lag_s is None and st.started_at is not None:
        # Both in the chain's clock: a chain running ahead of this host is no lag.
        lag = new_lag = int(min(MAX_LAG_S, max(0, view.since - ctx.started(st))))
    want = time_limit_s(
        escrow=view.escrow,
        price_per_minute=view.price_per_minute,
        grace_s=ctx.grace_s,
        lag_s=lag or 0,
        cap_s=ctx.max_time_limit_s,
    )
    current = rec.time_limit_s
    if current is not None:
        topped_up = rec.escrow is not None and view.escrow > rec.escrow
        lag_matters = new_lag is not None and want - current >= LAG_TOLERANCE_S
        if want <= current or not (topped_up or lag_matters):
            return Decision(lag_s=new_lag)
    return Decision(lag_s=new_lag, extend_to=want)
