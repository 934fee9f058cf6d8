"""The agent's decision for one job (``agent.decide``), table-driven: every chain state of the job
against every backend state, then the cases that turn on what the agent remembers (a kill, a
top-up, the start lag, an expiry waiting to be retried).

Each cell is the decision in words (``Decision.actions``), in the order the service carries it
out. ``unsubmitted``: the agent has no backend job for it; ``no status``: it has one but the
backend gave no status for it.
"""

from __future__ import annotations

import dataclasses

import pytest

from metascheduler.agent.admission import time_limit_s
from metascheduler.agent.backends import BackendJobInfo, BackendStatus
from metascheduler.agent.decide import LAG_TOLERANCE_S, Context, Decision, decide
from metascheduler.agent.outcomes import EXIT_KILLED, EXIT_LOST, EXIT_TIMEOUT
from metascheduler.agent.state import JobRecord
from metascheduler.chain.types import AT_NOW, JobStatus, JobView, ProviderAction, ProviderStep

S = JobStatus
ME, OTHER, NOBODY = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "00" * 20
JOB, NATIVE = 7, "4242"
SINCE = 1_000_000
PRICE = 60_000  # units per minute: 1,000 a second
ESCROW = 100_000  # 100 s at PRICE
GRACE, CAP = 30, 86_400
LIMIT = time_limit_s(escrow=ESCROW, price_per_minute=PRICE, grace_s=GRACE, lag_s=0, cap_s=CAP)
FUNDED_NOW, SPENT_NOW = SINCE + 50, SINCE + 100

BACKEND_COLUMNS = (
    "unsubmitted",
    "no status",
    "QUEUED",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "LOST",
    "UNKNOWN",
)


def backend(column: str) -> BackendJobInfo | None:
    if column in ("unsubmitted", "no status"):
        return None
    return status(column)


def status(column: str) -> BackendJobInfo:
    state = BackendStatus(column)
    started = column in ("RUNNING", "COMPLETED", "FAILED", "TIMEOUT")
    code = {"COMPLETED": 0, "FAILED": 3}.get(column)
    return BackendJobInfo(NATIVE, state, exit_code=code, started_at=SINCE if started else None)


def record(column: str, **over: object) -> JobRecord:
    if column == "unsubmitted":
        return JobRecord(JOB, **over)  # type: ignore[arg-type]
    base: dict[str, object] = {
        "native_id": NATIVE,
        "time_limit_s": LIMIT,
        "escrow": ESCROW,
        "price": PRICE,
    }
    return JobRecord(JOB, **{**base, **over})  # type: ignore[arg-type]


def view(status: JobStatus, provider: str = ME, escrow: int = ESCROW) -> JobView:
    return JobView(JOB, OTHER, provider, status, SINCE, PRICE, 100, escrow, b"\x01" * 16)


# What a row stands for: the chain's record, the record at the confirmed depth, and the clock.
ROWS: dict[str, tuple[JobView | None, JobView | None, int]] = {
    "no such job": (None, None, FUNDED_NOW),
    "PENDING": (view(S.PENDING, NOBODY), None, FUNDED_NOW),
    "META_SCHEDULED here": (view(S.META_SCHEDULED), None, FUNDED_NOW),
    "META_SCHEDULED elsewhere": (view(S.META_SCHEDULED, OTHER), None, FUNDED_NOW),
    "SCHEDULED here, ACCEPT deep": (view(S.SCHEDULED), view(S.SCHEDULED), FUNDED_NOW),
    "SCHEDULED here, ACCEPT shallow": (view(S.SCHEDULED), view(S.META_SCHEDULED), FUNDED_NOW),
    "SCHEDULED elsewhere": (view(S.SCHEDULED, OTHER), None, FUNDED_NOW),
    "RUNNING here, funded": (view(S.RUNNING), None, FUNDED_NOW),
    "RUNNING here, escrow spent": (view(S.RUNNING), None, SPENT_NOW),
    "RUNNING elsewhere": (view(S.RUNNING, OTHER), None, FUNDED_NOW),
    "CANCELLED": (view(S.CANCELLED), None, FUNDED_NOW),
    "FINISHED": (view(S.FINISHED), None, FUNDED_NOW),
    "FAILED": (view(S.FAILED), None, FUNDED_NOW),
    "OUT_OF_CREDITS": (view(S.OUT_OF_CREDITS), None, FUNDED_NOW),
    "FINISHED, COMPLETE shallow": (view(S.FINISHED), view(S.RUNNING), FUNDED_NOW),
    "CANCELLED, cancel shallow": (view(S.CANCELLED), view(S.SCHEDULED), FUNDED_NOW),
    "PENDING, reclaim shallow": (view(S.PENDING, NOBODY), view(S.META_SCHEDULED), FUNDED_NOW),
    "no such job, shallow": (None, view(S.RUNNING), FUNDED_NOW),
    "FINISHED, deep": (view(S.FINISHED), view(S.FINISHED), FUNDED_NOW),
}

# A job the chain ended, gave back, placed elsewhere or does not know: a live backend job is
# killed, and the job forgotten.
NOT_HERE = [
    "no such job",
    "PENDING",
    "META_SCHEDULED elsewhere",
    "SCHEDULED elsewhere",
    "RUNNING elsewhere",
    "CANCELLED",
    "FINISHED",
    "FAILED",
    "OUT_OF_CREDITS",
    "FINISHED, deep",
]
RETIRED = {
    "unsubmitted": "forget",
    "no status": "forget",
    "QUEUED": "kill forget",
    "RUNNING": "kill forget",
    "COMPLETED": "forget",
    "FAILED": "forget",
    "CANCELLED": "forget",
    "TIMEOUT": "forget",
    "LOST": "forget",
    "UNKNOWN": "kill forget",
}

# The same, while the record at the confirmed depth still shows the job live here: a reorg may
# undo the ending (a dropped COMPLETE), so the job is killed but not forgotten yet.
ENDED_SHALLOW = [
    "FINISHED, COMPLETE shallow",
    "CANCELLED, cancel shallow",
    "PENDING, reclaim shallow",
    "no such job, shallow",
]
RETIRED_SHALLOW = {
    column: " ".join(a for a in actions.split() if a != "forget")
    for column, actions in RETIRED.items()
}

# A job live here. An empty cell: nothing this round. Backend FAILED exits with code 3.
HERE = f"""
META_SCHEDULED here            | unsubmitted | admit accept
META_SCHEDULED here            | no status   | accept
META_SCHEDULED here            | QUEUED      | accept
META_SCHEDULED here            | RUNNING     | accept start
META_SCHEDULED here            | COMPLETED   | accept start complete 0
META_SCHEDULED here            | FAILED      | accept start complete 3
META_SCHEDULED here            | CANCELLED   | refuse
META_SCHEDULED here            | TIMEOUT     | accept start complete {EXIT_TIMEOUT}
META_SCHEDULED here            | LOST        | refuse
META_SCHEDULED here            | UNKNOWN     | accept
SCHEDULED here, ACCEPT deep    | unsubmitted | admit submit
SCHEDULED here, ACCEPT deep    | no status   | refuse
SCHEDULED here, ACCEPT deep    | QUEUED      |
SCHEDULED here, ACCEPT deep    | RUNNING     | start
SCHEDULED here, ACCEPT deep    | COMPLETED   | start complete 0
SCHEDULED here, ACCEPT deep    | FAILED      | start complete 3
SCHEDULED here, ACCEPT deep    | CANCELLED   | refuse
SCHEDULED here, ACCEPT deep    | TIMEOUT     | start complete {EXIT_TIMEOUT}
SCHEDULED here, ACCEPT deep    | LOST        | refuse
SCHEDULED here, ACCEPT deep    | UNKNOWN     |
SCHEDULED here, ACCEPT shallow | unsubmitted |
SCHEDULED here, ACCEPT shallow | no status   | refuse
SCHEDULED here, ACCEPT shallow | QUEUED      |
SCHEDULED here, ACCEPT shallow | RUNNING     | start
SCHEDULED here, ACCEPT shallow | COMPLETED   | start complete 0
SCHEDULED here, ACCEPT shallow | FAILED      | start complete 3
SCHEDULED here, ACCEPT shallow | CANCELLED   | refuse
SCHEDULED here, ACCEPT shallow | TIMEOUT     | start complete {EXIT_TIMEOUT}
SCHEDULED here, ACCEPT shallow | LOST        | refuse
SCHEDULED here, ACCEPT shallow | UNKNOWN     |
RUNNING here, funded           | unsubmitted | complete {EXIT_LOST}
RUNNING here, funded           | no status   | complete {EXIT_LOST}
RUNNING here, funded           | QUEUED      |
RUNNING here, funded           | RUNNING     |
RUNNING here, funded           | COMPLETED   | complete 0
RUNNING here, funded           | FAILED      | complete 3
RUNNING here, funded           | CANCELLED   | complete {EXIT_KILLED}
RUNNING here, funded           | TIMEOUT     | complete {EXIT_TIMEOUT}
RUNNING here, funded           | LOST        | complete {EXIT_LOST}
RUNNING here, funded           | UNKNOWN     |
RUNNING here, escrow spent     | unsubmitted | expire
RUNNING here, escrow spent     | no status   | expire
RUNNING here, escrow spent     | QUEUED      | expire
RUNNING here, escrow spent     | RUNNING     | expire
RUNNING here, escrow spent     | COMPLETED   | complete 0
RUNNING here, escrow spent     | FAILED      | complete 3
RUNNING here, escrow spent     | CANCELLED   | complete {EXIT_KILLED}
RUNNING here, escrow spent     | TIMEOUT     | expire
RUNNING here, escrow spent     | LOST        | complete {EXIT_LOST}
RUNNING here, escrow spent     | UNKNOWN     | expire
"""


def _table() -> dict[tuple[str, str], str]:
    table = {(row, column): RETIRED[column] for row in NOT_HERE for column in BACKEND_COLUMNS}
    for row in ENDED_SHALLOW:
        table.update({(row, column): RETIRED_SHALLOW[column] for column in BACKEND_COLUMNS})
    for line in HERE.strip().splitlines():
        row, column, want = (cell.strip() for cell in line.split("|"))
        assert (row, column) not in table, f"{row} / {column} twice"
        table[row, column] = want
    return table


TABLE = _table()


def ctx(now: int = FUNDED_NOW) -> Context:
    return Context(ME, now, GRACE, CAP)


def ctx_banned(now: int = FUNDED_NOW) -> Context:
    return Context(ME, now, GRACE, CAP, banned=True)


def ctx_ahead(seconds: int) -> Context:
    """A round where the chain's clock runs `seconds` ahead of the host's."""
    return Context(ME, FUNDED_NOW, GRACE, CAP, clock_offset=float(seconds))


def test_the_table_covers_every_chain_status() -> None:
    statuses = {v.status for v, _, _ in ROWS.values() if v is not None}
    assert statuses == set(JobStatus)
    assert set(TABLE) == {(row, column) for row in ROWS for column in BACKEND_COLUMNS}
    assert len(TABLE) == len(ROWS) * len(BACKEND_COLUMNS)
    assert set(BACKEND_COLUMNS[2:]) == {s.value for s in BackendStatus}


@pytest.mark.parametrize("row", list(ROWS))
@pytest.mark.parametrize("column", BACKEND_COLUMNS)
def test_decision_for_every_chain_state_and_backend_state(row: str, column: str) -> None:
    chain, confirmed, now = ROWS[row]
    got = decide(record(column), chain, backend(column), ctx(now), confirmed=confirmed)
    want = TABLE[row, column]
    assert " ".join(got.actions) == want, f"{row} / backend {column}"


@pytest.mark.parametrize("row", list(ROWS))
@pytest.mark.parametrize("column", BACKEND_COLUMNS)
def test_a_banned_provider_accepts_nothing_and_goes_on_with_what_it_accepted(
    row: str, column: str
) -> None:
    # A placement waits for the oracle to take it back (at once, for a banned provider); every
    # job accepted before the ban is submitted, started, completed, expired or killed as usual.
    chain, confirmed, now = ROWS[row]
    got = decide(record(column), chain, backend(column), ctx_banned(now), confirmed=confirmed)
    want = "" if row == "META_SCHEDULED here" else TABLE[row, column]
    assert " ".join(got.actions) == want, f"{row} / backend {column}"


@pytest.mark.parametrize("row", list(ROWS))
@pytest.mark.parametrize("column", BACKEND_COLUMNS)
def test_a_job_is_never_submitted_twice(row: str, column: str) -> None:
    chain, confirmed, now = ROWS[row]
    got = decide(record(column), chain, backend(column), ctx(now), confirmed=confirmed)
    if got.submit:
        assert column == "unsubmitted" and chain is not None
        assert chain.status is S.SCHEDULED and confirmed is not None
        assert confirmed.status is S.SCHEDULED and confirmed.provider == ME


def test_steps_carry_the_job_the_exit_code_and_the_backends_times() -> None:
    ran = dataclasses.replace(status("FAILED"), started_at=SINCE + 5.4, ended_at=SINCE + 100.7)
    got = decide(record("FAILED"), view(S.SCHEDULED), ran, ctx())
    # Rounded in the customer's favour: the start up, the end down.
    assert got.steps == (
        ProviderStep(JOB, ProviderAction.START, at=SINCE + 6),
        ProviderStep(JOB, ProviderAction.COMPLETE, 3, at=SINCE + 100),
    )


def test_times_the_backend_does_not_give_are_reported_as_now() -> None:
    got = decide(record("FAILED"), view(S.SCHEDULED), backend("FAILED"), ctx())
    assert got.steps == (
        ProviderStep(JOB, ProviderAction.START, at=SINCE),
        ProviderStep(JOB, ProviderAction.COMPLETE, 3, at=AT_NOW),
    )


def test_the_backends_times_are_reported_in_the_chains_clock() -> None:
    ahead = 3_600
    ran = dataclasses.replace(status("COMPLETED"), started_at=SINCE + 10.0, ended_at=SINCE + 70.0)
    got = decide(record("COMPLETED"), view(S.SCHEDULED), ran, ctx_ahead(ahead))
    assert [s.at for s in got.steps] == [SINCE + 10 + ahead, SINCE + 70 + ahead]


def test_a_chain_clock_ahead_of_the_host_is_no_start_lag() -> None:
    """The chain's start, where its clock runs an hour ahead of the host's, is the backend's
    start in the chain's clock: no lag, the time limit stays what the escrow pays for."""
    ahead = 3_600
    started = dataclasses.replace(status("RUNNING"), started_at=float(SINCE - ahead))
    got = decide(record("RUNNING"), view(S.RUNNING), started, ctx_ahead(ahead))
    assert got.lag_s == 0
    assert got.extend_to is None


@pytest.mark.parametrize(
    ("chain", "column", "why"),
    [
        (None, "RUNNING", "it is not a job on this chain"),
        (view(S.CANCELLED), "RUNNING", "it is CANCELLED on chain"),
        (view(S.PENDING, ME), "QUEUED", "it is PENDING on chain"),
        (view(S.PENDING, NOBODY), "QUEUED", "it is no longer placed on this provider"),
        (view(S.SCHEDULED, OTHER), "UNKNOWN", "it is no longer placed on this provider"),
    ],
)
def test_a_kill_says_why_in_words(chain: JobView | None, column: str, why: str) -> None:
    assert decide(record(column), chain, backend(column), ctx()).kill == why


@pytest.mark.parametrize(
    ("status", "column", "reason"),
    [
        (S.META_SCHEDULED, "LOST", f"its backend job {NATIVE} was lost"),
        (S.META_SCHEDULED, "CANCELLED", f"its backend job {NATIVE} was cancelled"),
        (S.SCHEDULED, "CANCELLED", f"its backend job {NATIVE} was cancelled before it started"),
        (S.SCHEDULED, "no status", "the backend has no job for it (lost before it started)"),
    ],
)
def test_a_refusal_says_why_in_words(status: JobStatus, column: str, reason: str) -> None:
    assert decide(record(column), view(status), backend(column), ctx()).refuse == reason


def test_a_killed_backend_job_that_never_started_may_run_afresh_when_placed_again() -> None:
    got = decide(
        record("CANCELLED", killed=True), view(S.META_SCHEDULED), backend("CANCELLED"), ctx()
    )
    assert got.actions == ("rerun", "admit", "accept")


def test_a_killed_backend_job_that_started_is_never_run_again() -> None:
    ran = dataclasses.replace(status("CANCELLED"), started_at=float(SINCE))
    got = decide(record("CANCELLED", killed=True), view(S.META_SCHEDULED), ran, ctx())
    assert got.actions == ("refuse",)


def test_a_job_the_agent_killed_at_its_expiry_is_expired_again_not_reported() -> None:
    got = decide(
        record("CANCELLED", killed=True), view(S.RUNNING), backend("CANCELLED"), ctx(SPENT_NOW)
    )
    assert got.actions == ("expire",)


@pytest.mark.parametrize("column", ["unsubmitted", "RUNNING", "TIMEOUT"])
def test_an_expiry_waiting_to_be_retried_is_not_sent(column: str) -> None:
    got = decide(record(column), view(S.RUNNING), backend(column), ctx(SPENT_NOW), may_expire=False)
    assert got == Decision()


def test_a_top_up_raises_the_time_limit() -> None:
    topped = view(S.RUNNING, escrow=ESCROW + 200_000)
    got = decide(record("RUNNING"), topped, backend("RUNNING"), ctx())
    want = time_limit_s(
        escrow=ESCROW + 200_000, price_per_minute=PRICE, grace_s=GRACE, lag_s=0, cap_s=CAP
    )
    assert got.extend_to == want > LIMIT


def test_a_limit_never_given_is_given() -> None:
    got = decide(record("QUEUED", time_limit_s=None), view(S.SCHEDULED), backend("QUEUED"), ctx())
    assert got.extend_to == LIMIT


@pytest.mark.parametrize(
    ("lag", "extended"), [(LAG_TOLERANCE_S + 50, True), (LAG_TOLERANCE_S - 5, False)]
)
def test_the_start_lag_is_measured_once_and_added_when_it_matters(lag: int, extended: bool) -> None:
    st = dataclasses.replace(status("RUNNING"), started_at=float(SINCE - lag))
    got = decide(record("RUNNING"), view(S.RUNNING), st, ctx())
    assert got.lag_s == lag
    assert got.extend_to == (
        time_limit_s(escrow=ESCROW, price_per_minute=PRICE, grace_s=GRACE, lag_s=lag, cap_s=CAP)
        if extended
        else None
    )
    again = decide(record("RUNNING", lag_s=lag), view(S.RUNNING), st, ctx())
    assert again.lag_s is None


def test_a_lag_beyond_belief_is_capped() -> None:
    st = dataclasses.replace(status("RUNNING"), started_at=0.0)
    got = decide(record("RUNNING"), view(S.RUNNING), st, ctx())
    assert got.lag_s == 24 * 3600
