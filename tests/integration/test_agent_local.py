"""The provider agent end to end on a real anvil and the local backend (real processes).

The oracle is played by the test (``place_job`` as the oracle account); the agent is driven
round by round with ``tick()``, except where a real process is killed and restarted.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from metascheduler import billing
from metascheduler.agent.backends import BackendJob, BackendStatus, job_name
from metascheduler.agent.backends.local import LocalBackend, read_records
from metascheduler.agent.outcomes import EXIT_LOST
from metascheduler.agent.service import build, run
from metascheduler.agent.settings import AgentSettings
from metascheduler.agent.state import JobRecord, StateError, StateStore
from metascheduler.chain import JobStatus
from metascheduler.chain.types import ProviderAction, ProviderStatus, ProviderStep
from metascheduler.heartbeat import verify
from metascheduler.spec import parse_spec
from tests.conftest import ON_ANVIL_AND_HARDHAT, Grid
from tests.integration.agentkit import (
    CPU_PRICE,
    CREDIT,
    World,
    make_world,
    spec,
    start_agent_process,
    wait_running_then_sigkill,
    write_toml,
)

pytestmark = pytest.mark.chain
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["c", "python"])
def world(grid: Grid, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """An agent on the local backend, with each job supervisor (C, and Python)."""
    local = {"workdir": tmp_path / "local", "cpus": 2, "mem_mb": 2048}
    w = make_world(grid, tmp_path, local={**local, "supervisor": request.param})
    yield w
    w.agent.close()


def local_backend(w: World) -> LocalBackend:
    backend = w.agent.backend
    assert isinstance(backend, LocalBackend)
    return backend


def kinds(steps: list[ProviderStep]) -> list[tuple[int, ProviderAction]]:
    """The steps without their times (which the backend sets)."""
    return [(s.job_id, s.action) for s in steps]


def records_for(w: World, job_id: int) -> list[dict[str, Any]]:
    """The local backend's records of the job: live ones, then those of its ended runs."""
    return [r for r in read_records(local_backend(w).workdir).values() if r["job_id"] == job_id]


def test_registers_once_and_again_when_the_record_differs(grid: Grid, tmp_path: Path) -> None:
    w = make_world(grid, tmp_path)
    reader = w.reader
    status, hw, prices = reader.get_provider(w.provider.address)
    assert status is ProviderStatus.APPROVED
    assert (hw.cpus, hw.mem_mb, prices.cpu) == (4, 4096, CPU_PRICE)
    w.agent.close()

    def registrations() -> int:
        logs = reader.w3.eth.get_logs(
            {
                "address": reader.address,
                "fromBlock": grid.deployment.block,
                "topics": [reader.events.topic("ProviderRegistered")],
            }
        )
        return len(logs)

    same = build(w.settings)
    same.start()  # same record: no second registration
    same.close()
    assert registrations() == 1

    dearer = build(w.settings.model_copy(update={"labels": ["gpu", "x86_64"]}))
    assert dearer.start() is ProviderStatus.APPROVED  # an update keeps the standing
    dearer.close()
    assert registrations() == 2


def test_state_dir_is_held_by_one_agent(world: World) -> None:
    with pytest.raises(StateError, match="another agent holds"):
        StateStore(world.settings.state_dir).open()


@ON_ANVIL_AND_HARDHAT
def test_finished_and_failed_jobs_are_reported_and_billed(world: World) -> None:
    w = world
    ok = w.submit(spec("sleep 3; echo done"))
    bad = w.submit(spec("exit 3"))

    first = w.tick()
    assert sorted(first.placed) == [ok, bad] and sorted(first.submitted) == [ok, bad]
    # Both acceptances went out in one transaction.
    accepts = [e for j in (ok, bad) for e in w.events(j, "JobStatusChanged")]
    assert len({e.tx_hash for e in accepts}) == 1

    w.until_status(bad, JobStatus.FAILED)
    w.until_status(ok, JobStatus.FINISHED)

    (ended_bad,) = w.events(bad, "JobEnded")
    assert ended_bad.args["exitCode"] == 3
    (ended_ok,) = w.events(ok, "JobEnded")
    assert ended_ok.args["exitCode"] == 0
    start, end = w.run_window(ok)
    assert end - start >= 1  # it slept 3 s, most of it after its START was on chain
    price = w.job(ok).price_per_minute
    assert price == CPU_PRICE
    paid = ended_ok.args["paid"] + ended_ok.args["fee"]
    assert paid == billing.cost(price=price, elapsed_s=end - start, escrow=CREDIT) > 0
    assert ended_ok.args["refunded"] == CREDIT - paid
    out = Path(records_for(w, ok)[0]["dir"]) / "job.out"
    assert out.read_text() == "done\n"
    w.tick()
    assert w.agent.state.jobs == {}  # ended on both sides: forgotten


def test_refuses_what_it_cannot_run_with_reasons(world: World) -> None:
    w = world
    gpu_label = w.submit(spec("true", labels="[gpu]"))
    too_big = w.submit(spec("true", cpus=3))  # declared 4 CPUs, the local backend has 2
    junk = w.request_raw(b'{"name": 5}', 1, 0, 100, CREDIT, 10 * CPU_PRICE)
    w.place(junk)
    mismatch, data = w.request(spec("true", cpus=1))
    w.request_raw(data, 2, 0, 200, CREDIT, 10 * CPU_PRICE)  # same spec, paid for 2 CPUs
    w.place(mismatch + 1)

    rnd = w.tick()
    assert set(rnd.refused) == {gpu_label, too_big, junk, mismatch + 1}
    # Only the backend can tell that too_big does not fit: it refuses it at submission, which
    # comes after the ACCEPT; the refusal follows in the same round.
    assert rnd.steps == [ProviderStep(too_big, ProviderAction.ACCEPT)] and rnd.submitted == {}
    for job_id in rnd.refused:
        assert w.job(job_id).status is JobStatus.PENDING
    reasons = {j: w.events(j, "JobReturned")[0].args["reason"] for j in rnd.refused}
    assert "needs labels this provider lacks: gpu" in reasons[gpu_label]
    assert (
        "the backend refused it: job" in reasons[too_big] and "never run here" in reasons[too_big]
    )
    assert reasons[junk].startswith("invalid job spec:")
    assert "request pays for 2 CPUs" in reasons[mismatch + 1]
    assert local_backend(w).adopt() == {}  # nothing was submitted

    # Placed again on this provider: refused again, not stuck.
    w.place(gpu_label)
    assert gpu_label in w.tick().refused


@ON_ANVIL_AND_HARDHAT
def test_a_job_that_ran_between_two_rounds_is_billed_its_run(world: World) -> None:
    """The agent's round comes only after the job ended on the backend: START and COMPLETE go
    out in one transaction, and the job is billed the backend's run, not the zero seconds
    between them."""
    w = world
    job_id = w.submit(spec("sleep 4"))
    assert list(w.tick().submitted) == [job_id]
    native = records_for(w, job_id)[0]["native_id"]
    deadline = time.monotonic() + 60
    while not (st := local_backend(w).status([native])[native]).status.is_terminal:
        assert time.monotonic() < deadline, "the local job did not end"
        time.sleep(0.2)
    assert st.status is BackendStatus.COMPLETED
    w.tick()
    (started,) = [
        e for e in w.events(job_id, "JobStatusChanged") if e.args["to"] == JobStatus.RUNNING
    ]
    (ended,) = w.events(job_id, "JobEnded")
    assert started.tx_hash == ended.tx_hash  # reported in one go
    start, end = w.run_window(job_id)
    assert 3 <= end - start <= 5  # it slept 4 s (the start rounded up, the end down)
    paid = ended.args["paid"] + ended.args["fee"]
    assert paid == billing.cost(price=CPU_PRICE, elapsed_s=end - start, escrow=CREDIT) > 0


def test_cancel_while_running_kills_it_and_stops_billing(world: World) -> None:
    w = world
    job_id = w.submit(spec("sleep 300"))
    w.until_status(job_id, JobStatus.RUNNING)
    w.customer.cancel_job(job_id)

    rnd = w.tick()
    assert rnd.killed == [job_id] and rnd.dropped == [job_id]
    native = records_for(w, job_id)[0]["native_id"]
    st = w.tick_until(
        "the local job to end",
        lambda: s if (s := local_backend(w).status([native])[native]).status.is_terminal else None,
    )
    assert st.status is BackendStatus.CANCELLED
    start, end = w.run_window(job_id)
    (ended,) = w.events(job_id, "JobEnded")
    assert ended.args["to"] == JobStatus.CANCELLED
    assert ended.args["paid"] + ended.args["fee"] == billing.cost(
        price=CPU_PRICE, elapsed_s=end - start, escrow=CREDIT
    )
    earned = w.reader.balance_of(w.provider.address)
    w.tick()
    assert w.reader.balance_of(w.provider.address) == earned


@ON_ANVIL_AND_HARDHAT
def test_out_of_credits_is_expired_and_killed(world: World) -> None:
    w = world
    escrow = 60 * 1_000  # 60 s at 1,000 units per second
    job_id = w.submit(spec("sleep 300"), escrow=escrow)
    w.until_status(job_id, JobStatus.RUNNING)
    native = records_for(w, job_id)[0]["native_id"]
    w.tick()
    assert w.job(job_id).status is JobStatus.RUNNING  # still funded

    w.advance_chain(120)
    rnd = w.tick()
    assert rnd.expired == [job_id] and rnd.killed == [job_id]
    (ended,) = w.events(job_id, "JobEnded")
    assert ended.args["to"] == JobStatus.OUT_OF_CREDITS
    assert ended.args["paid"] + ended.args["fee"] == escrow
    st = w.tick_until(
        "the local job to be killed",
        lambda: s if (s := local_backend(w).status([native])[native]).status.is_terminal else None,
    )
    assert st.status is BackendStatus.CANCELLED


@ON_ANVIL_AND_HARDHAT
def test_top_up_extends_the_time_limit(world: World) -> None:
    w = world
    job_id = w.submit(spec("sleep 300"), escrow=100_000)  # 100 s
    w.until_status(job_id, JobStatus.RUNNING)
    rec = records_for(w, job_id)[0]
    limit_file = Path(rec["dir"]) / "limit"
    before = int(limit_file.read_text())
    assert before >= 100 + w.settings.time_limit_grace_s

    w.customer.top_up(job_id, 200_000)  # 200 s more
    rnd = w.tick()
    after = int(limit_file.read_text())
    assert rnd.extended == {job_id: after}
    assert after - before >= 200
    w.customer.cancel_job(job_id)
    assert w.tick().killed == [job_id]


def test_skipped_step_of_a_job_cancelled_meanwhile_kills_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    job_id = w.submit(spec("sleep 300"))
    rnd = w.tick()
    native = rnd.submitted[job_id]
    backend = local_backend(w)
    deadline = time.monotonic() + 30
    while backend.status([native])[native].status is not BackendStatus.RUNNING:
        assert time.monotonic() < deadline, "the backend never ran the job"
        time.sleep(0.1)
    assert w.job(job_id).status is JobStatus.SCHEDULED

    # The customer's cancel is mined after the agent read the job SCHEDULED and before its
    # START goes out: the contract skips the START, and the agent kills the job at once.
    real_status = backend.status

    def status_after_a_cancel(native_ids: Any) -> Any:
        monkeypatch.setattr(backend, "status", real_status)
        w.customer.cancel_job(job_id)
        return real_status(native_ids)

    monkeypatch.setattr(backend, "status", status_after_a_cancel)
    rnd = w.tick()
    assert (job_id, ProviderAction.START) in kinds(rnd.steps)
    assert [s.job_id for s in rnd.skipped] == [job_id] and "CANCELLED" in rnd.skipped[0].error
    assert rnd.killed == [job_id] and job_id not in w.agent.state.jobs


def test_job_lost_by_the_backend_is_reported_failed(grid: Grid, tmp_path: Path) -> None:
    w = make_world(grid, tmp_path)
    job_id = w.submit(spec("sleep 300"))
    w.until_status(job_id, JobStatus.RUNNING)
    native = records_for(w, job_id)[0]["native_id"]
    w.agent.close()
    local_backend(w).cancel(native)

    # A new agent with neither the state file nor the backend's records: the chain says the
    # job is RUNNING here, nothing knows it any more.
    fresh = make_world(
        grid,
        tmp_path / "fresh",
        local={"workdir": tmp_path / "fresh-local", "cpus": 2, "mem_mb": 2048},
    )
    try:
        rnd = fresh.tick()
        assert ProviderStep(job_id, ProviderAction.COMPLETE, EXIT_LOST) in rnd.steps
        (ended,) = fresh.events(job_id, "JobEnded")
        assert (ended.args["to"], ended.args["exitCode"]) == (JobStatus.FAILED, EXIT_LOST)
    finally:
        fresh.agent.close()


def test_agent_killed_mid_run_adopts_its_job_on_restart(grid: Grid, tmp_path: Path) -> None:
    w = make_world(grid, tmp_path)
    w.agent.close()  # the real agent is the process below
    log_path = tmp_path / "agent.log"
    proc = start_agent_process(write_toml(w.settings, tmp_path / "agent.toml"), log_path)
    job_id = w.submit(spec("sleep 4; exit 0"))
    wait_running_then_sigkill(w, job_id, proc, log_path)
    assert "waiting for the admin" not in log_path.read_text()  # it was approved already
    assert len(records_for(w, job_id)) == 1

    restarted = build(w.settings)
    restarted.start()
    w.agent = restarted
    try:
        assert restarted.state.jobs[job_id].native_id == records_for(w, job_id)[0]["native_id"]
        w.until_status(job_id, JobStatus.FINISHED)
        assert len(records_for(w, job_id)) == 1  # ran once, never submitted again
        assert all(not r.submitted for r in w.rounds)
    finally:
        restarted.close()


def test_job_submitted_just_before_a_crash_is_adopted_not_resubmitted(
    grid: Grid, tmp_path: Path
) -> None:
    w = make_world(grid, tmp_path)
    job_id = w.submit(spec("sleep 1"))
    # One round: the ACCEPT is mined and the job queued on the backend...
    rnd = w.tick()
    assert job_id in rnd.submitted
    assert w.job(job_id).status is JobStatus.SCHEDULED
    w.agent.close()
    # ...then the agent dies and its state file is lost: nothing on disk says it submitted
    # the job, as if it had died before saving.
    (w.settings.state_dir / "agent-state.json").unlink()
    w.rounds.clear()

    w.agent = build(w.settings)
    w.agent.start()
    try:
        assert w.agent.state.jobs[job_id].native_id == rnd.submitted[job_id]
        w.until_status(job_id, JobStatus.FINISHED)
        assert all(not r.submitted for r in w.rounds)
        assert len(records_for(w, job_id)) == 1
    finally:
        w.agent.close()


def test_a_job_unknown_to_the_chain_is_killed_and_forgotten(world: World) -> None:
    w = world
    real = w.submit(spec("sleep 300"))
    w.until_status(real, JobStatus.RUNNING)
    # A backend job of a chain that is gone (a devnet restarted from scratch, say).
    stray = BackendJob(999, parse_spec(spec("sleep 300")), 60, name=job_name(999, w.agent.prefix))
    native = local_backend(w).submit(stray)
    w.agent.state.jobs[999] = JobRecord(999, native_id=native)

    rnd = w.tick()  # one getJob in the batch reverts: read one by one
    assert rnd.killed == [999] and 999 not in w.agent.state.jobs
    assert w.agent.state.jobs[real].native_id is not None
    w.customer.cancel_job(real)
    assert w.tick().killed == [real]


def test_state_of_another_chain_is_moved_aside(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    market, provider = "0x" + "11" * 20, "0x" + "22" * 20
    old = store.load(market, provider, genesis="0x" + "aa" * 32)
    old.jobs[1] = JobRecord(1, native_id="7")
    store.save(old)
    assert store.load(market, provider, genesis="0x" + "aa" * 32).jobs[1].native_id == "7"

    fresh = store.load(market, provider, genesis="0x" + "bb" * 32)
    assert fresh.jobs == {} and fresh.genesis == "0x" + "bb" * 32
    assert (tmp_path / "agent-state.json.aaaaaaaa.old").exists()
    with pytest.raises(StateError, match="belongs to provider"):
        store.save(old)
        store.load(market, "0x" + "33" * 20, genesis="0x" + "aa" * 32)


def test_sigterm_stops_the_agent_cleanly(grid: Grid, tmp_path: Path) -> None:
    w = make_world(grid, tmp_path)
    w.agent.close()
    log_path = tmp_path / "agent.log"
    proc = start_agent_process(write_toml(w.settings, tmp_path / "agent.toml"), log_path)
    try:
        job_id = w.submit(spec("sleep 300"))
        deadline = time.monotonic() + 60
        while w.job(job_id).status is not JobStatus.RUNNING:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert "SIGTERM received" in text and "agent stopped" in text
    assert w.settings.private_key is not None
    assert w.settings.private_key.get_secret_value().removeprefix("0x") not in text
    # The job outlives the agent, on the backend and on chain.
    assert w.job(job_id).status is JobStatus.RUNNING
    native = records_for(w, job_id)[0]["native_id"]
    assert local_backend(w).status([native])[native].status is BackendStatus.RUNNING
    local_backend(w).cancel(native)


def test_a_round_runs_on_each_new_block_and_each_job_end_not_only_each_poll(
    grid: Grid, tmp_path: Path
) -> None:
    """With a poll of a minute, a job still goes from placement to RUNNING and from its end to
    FINISHED in seconds: the session's chain mines a block per transaction, so the placement
    and the ACCEPT each wake the agent, and the job's end (no block follows it) wakes it too."""
    w = make_world(grid, tmp_path, poll_interval_s=60.0)
    w.agent.close()
    stop = threading.Event()
    agent = threading.Thread(target=run, args=(w.settings, stop), daemon=True)
    agent.start()
    try:
        time.sleep(1.0)  # the first round has run: from now on, only news starts one
        job_id = w.submit(spec("sleep 2"))
        deadline = time.monotonic() + 20
        seen: list[JobStatus] = []
        while w.job(job_id).status is not JobStatus.FINISHED:
            status = w.job(job_id).status
            if not seen or seen[-1] is not status:
                seen.append(status)
            assert time.monotonic() < deadline, f"still {status.name} after 20 s (saw {seen})"
            time.sleep(0.1)
        assert JobStatus.RUNNING in seen
    finally:
        stop.set()
        agent.join(30)


def test_a_round_reads_the_requests_of_its_new_placements_in_one_call(world: World) -> None:
    ids = [world.submit(spec("true")) for _ in range(5)]
    eth = world.agent.chain.w3.eth
    calls: list[Any] = []
    real = eth.get_logs

    def counted(params: Any) -> Any:
        calls.append(params["topics"][0])
        return real(params)

    eth.get_logs = counted  # type: ignore[method-assign,assignment]
    try:
        world.tick()
    finally:
        del eth.get_logs
    requested = world.reader.events.topic("JobRequested")
    assert calls.count(requested) == 1
    for job_id in ids:
        assert world.job(job_id).status is JobStatus.SCHEDULED


@pytest.mark.parametrize("name", ["agent-local.toml", "agent-slurm.toml"])
def test_example_configs_load(name: str) -> None:
    settings = AgentSettings.load(REPO / "examples" / name)
    assert settings.backend in name and settings.market_address


class _Collector(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append({"path": self.path, **json.loads(self.rfile.read(length))})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_heartbeats_are_signed_and_their_seq_survives_a_restart(grid: Grid, tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    _Collector.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        w = make_world(grid, tmp_path, api_url=url, heartbeat_interval_s=0.01)
        job_id = w.submit(spec("sleep 300"))
        w.until_status(job_id, JobStatus.RUNNING)
        w.tick()
        w.agent.close()
        again = build(w.settings)
        again.start()
        again.tick()
        w.customer.cancel_job(job_id)
        again.tick()
        again.close()
    finally:
        server.shutdown()

    chain_id = w.reader.w3.eth.chain_id
    seqs, last = [], None
    for body in _Collector.bodies:
        assert body.pop("path") == "/api/heartbeats"
        hb = verify(body, market=w.reader.address, chain_id=chain_id, last_seq=last)
        assert hb.provider == w.provider.address and hb.backend == "local"
        seqs.append(hb.seq)
        last = hb.seq
    assert len(seqs) >= 3 and seqs == sorted(set(seqs))
    assert any(job_id in b["heartbeat"]["running"] for b in _Collector.bodies)


def test_unreachable_api_is_not_fatal(grid: Grid, tmp_path: Path) -> None:
    w = make_world(grid, tmp_path, api_url="http://127.0.0.1:9", heartbeat_interval_s=0.01)
    try:
        job_id = w.submit(spec("true"))
        rnd = w.tick()
        assert rnd.submitted and rnd.heartbeat is False
        w.until_status(job_id, JobStatus.FINISHED)
    finally:
        w.agent.close()


# ------------------------------------------------------------------ faults: reorgs, dropped txs

ACCEPT, START, COMPLETE = ProviderAction.ACCEPT, ProviderAction.START, ProviderAction.COMPLETE


def test_nothing_runs_until_the_accept_is_mined(grid: Grid, tmp_path: Path) -> None:
    w = make_world(grid, tmp_path, receipt_timeout_s=1.0)
    try:
        job_id = w.submit(spec("sleep 300"))
        junk = w.request_raw(b'{"name": 5}', 1, 0, 100, CREDIT, 10 * CPU_PRICE)
        w.place(junk)
        w.rpc("evm_setAutomine", False)
        try:
            stuck = w.tick()
        finally:
            w.rpc("anvil_dropAllTransactions")  # as a reorg that dropped the ACCEPT would
            w.rpc("evm_setAutomine", True)
        # The ACCEPT went out and was never mined: nothing went to the backend, and the round
        # stopped sending after one receipt timeout (the refusal waits).
        assert stuck.steps == [ProviderStep(job_id, ACCEPT)]
        assert stuck.submitted == {} and stuck.refused == {}
        assert local_backend(w).adopt() == {}
        assert w.job(job_id).status is JobStatus.META_SCHEDULED

        # The oracle takes the placement back after its accept timeout: it never ran here.
        w.advance_chain(61)
        w.oracle.reclaim_jobs([job_id])
        rnd = w.tick()
        assert job_id in rnd.dropped and rnd.killed == []
        assert local_backend(w).adopt() == {}
        # The nonce was re-read: the refusal is not stuck behind the dropped ACCEPT's nonce.
        assert junk in rnd.refused

        # Placed here again: ACCEPT mined and the job queued in the same round.
        w.place(job_id)
        rnd = w.tick()
        assert rnd.steps == [ProviderStep(job_id, ACCEPT)] and list(rnd.submitted) == [job_id]
        w.customer.cancel_job(job_id)
        assert w.tick().killed == [job_id]
    finally:
        w.agent.close()


def test_steps_a_reorg_undid_are_sent_again_and_the_job_never_reruns(world: World) -> None:
    w = world
    job_id = w.submit(spec("exit 0"))
    placed = w.snapshot()
    w.until_status(job_id, JobStatus.FINISHED)
    w.tick()
    assert job_id not in w.agent.state.jobs  # done with it

    w.revert_chain(placed)  # ACCEPT, START and COMPLETE dropped
    assert w.job(job_id).status is JobStatus.META_SCHEDULED
    rnd = w.tick()
    assert rnd.submitted == {}
    assert kinds(rnd.steps) == [(job_id, ACCEPT), (job_id, START), (job_id, COMPLETE)]
    (ended,) = w.events(job_id, "JobEnded")
    assert (ended.args["to"], ended.args["exitCode"]) == (JobStatus.FINISHED, 0)
    assert len(records_for(w, job_id)) == 1  # ran once


def test_a_complete_a_reorg_dropped_within_the_confirmations_is_sent_again(
    grid: Grid, tmp_path: Path
) -> None:
    # The reorg replaces blocks above the agent's confirmed block only, so the block cursor of
    # its placement scan sees no change: the job must still be tracked to be reported again.
    w = make_world(grid, tmp_path, confirmations=3)

    def mining(cond: Any) -> Any:
        """``cond`` for ``tick_until``, with a block mined after each round that fails it."""

        def check() -> Any:
            got = cond()
            if not got:
                w.rpc("evm_mine")
            return got

        return check

    try:
        job_id = w.submit(spec("sleep 2; exit 0"))
        w.tick_until("START", mining(lambda: w.job(job_id).status is JobStatus.RUNNING))
        native = w.agent.state.jobs[job_id].native_id
        assert native is not None
        backend = local_backend(w)
        end = time.monotonic() + 30
        while backend.status([native])[native].status is not BackendStatus.COMPLETED:
            assert time.monotonic() < end, "the local job did not end"
            time.sleep(0.2)  # no round meanwhile: the COMPLETE goes out after the snapshot
        before = w.snapshot()
        assert kinds(w.tick().steps) == [(job_id, COMPLETE)]
        assert w.job(job_id).status is JobStatus.FINISHED
        w.rpc("evm_mine")
        w.tick()  # sees the job FINISHED at the head, not yet at the confirmed block

        w.revert_chain(before)  # the COMPLETE dropped, and not mined again from the pool
        pool = w.rpc("txpool_status")
        assert int(str(pool["pending"]), 0) == 0 and int(str(pool["queued"]), 0) == 0
        assert w.job(job_id).status is JobStatus.RUNNING
        w.tick_until(
            "the COMPLETE sent again",
            mining(lambda: w.job(job_id).status is JobStatus.FINISHED),
            deadline_s=20,
        )
        (ended,) = w.events(job_id, "JobEnded")
        assert (ended.args["to"], ended.args["exitCode"]) == (JobStatus.FINISHED, 0)
        # Forgotten once the ending is buried at the confirmations; never run twice.
        w.tick_until("the job forgotten", mining(lambda: job_id not in w.agent.state.jobs))
        assert len(records_for(w, job_id)) == 1
    finally:
        w.agent.close()


def test_a_reorg_undoing_steps_keeps_the_job_and_undoing_the_placement_kills_it(
    world: World,
) -> None:
    w = world
    job_id, _ = w.request(spec("sleep 300"))
    requested = w.snapshot()
    w.place(job_id)
    placed = w.snapshot()
    w.until_status(job_id, JobStatus.RUNNING)
    (native,) = [r["native_id"] for r in records_for(w, job_id)]

    w.revert_chain(placed)  # ACCEPT and START dropped: placed here, META_SCHEDULED again
    rnd = w.tick()
    assert rnd.submitted == {} and rnd.killed == []
    assert kinds(rnd.steps) == [(job_id, ACCEPT), (job_id, START)]
    assert w.job(job_id).status is JobStatus.RUNNING
    assert local_backend(w).status([native])[native].status is BackendStatus.RUNNING

    w.revert_chain(requested)  # the placement dropped: PENDING, not ours any more
    rnd = w.tick()
    assert rnd.killed == [job_id] and rnd.dropped == [job_id]
    st = w.tick_until(
        "the local job to be killed",
        lambda: s if (s := local_backend(w).status([native])[native]).status.is_terminal else None,
    )
    assert st.status is BackendStatus.CANCELLED
    assert len(records_for(w, job_id)) == 1


@pytest.mark.parametrize("tombstone", [True, False], ids=["tombstone", "state-lost"])
def test_an_expiry_undone_by_a_reorg_is_expired_again(world: World, tombstone: bool) -> None:
    w = world
    job_id = w.submit(spec("sleep 300"), escrow=60 * 1_000)  # 60 s
    w.until_status(job_id, JobStatus.RUNNING)
    w.advance_chain(120)
    spent = w.snapshot()
    assert w.tick().expired == [job_id]
    w.tick()
    assert job_id not in w.agent.state.jobs
    if not tombstone:
        w.agent.state.done.clear()  # as if the agent had lost what it knew of the job

    w.revert_chain(spent)  # the expiry dropped: RUNNING again, its escrow still spent
    assert w.job(job_id).status is JobStatus.RUNNING
    rnd = w.tick()
    assert rnd.expired == [job_id] and rnd.steps == []
    (ended,) = w.events(job_id, "JobEnded")
    assert ended.args["to"] == JobStatus.OUT_OF_CREDITS


def test_a_refusal_a_reorg_dropped_within_the_confirmations_is_sent_again(
    grid: Grid, tmp_path: Path
) -> None:
    # As for a dropped COMPLETE: the reorg replaces blocks above the agent's confirmed block
    # only, so its placement scan sees no change; the refused job must still be tracked to be
    # refused again.
    w = make_world(grid, tmp_path, confirmations=3)
    try:
        job_id = w.submit(spec("true", labels="[gpu]"))  # the provider has no GPU label
        for _ in range(3):
            w.rpc("evm_mine")  # the placement buried at the confirmations
        before = w.snapshot()
        assert job_id in w.tick().refused
        assert w.job(job_id).status is JobStatus.PENDING
        w.rpc("evm_mine")
        w.tick()  # sees the job PENDING at the head, not yet at the confirmed block

        w.revert_chain(before)  # the refusal dropped, and not mined again from the pool
        pool = w.rpc("txpool_status")
        assert int(str(pool["pending"]), 0) == 0 and int(str(pool["queued"]), 0) == 0
        assert w.job(job_id).status is JobStatus.META_SCHEDULED

        def refused_again() -> bool:
            done = w.job(job_id).status is JobStatus.PENDING
            if not done:
                w.rpc("evm_mine")
            return done

        w.tick_until("the refusal sent again", refused_again, deadline_s=20)
        (returned,) = w.events(job_id, "JobReturned")
        assert "gpu" in returned.args["reason"]
        # Forgotten once the refusal is buried at the confirmations.
        for _ in range(3):
            w.rpc("evm_mine")
        w.tick()
        assert job_id not in w.agent.state.jobs
    finally:
        w.agent.close()


def test_an_agent_banned_while_running_starts_and_ends_what_it_accepted_and_accepts_nothing(
    world: World,
) -> None:
    w = world
    running = w.submit(spec("sleep 3; exit 0"))
    w.until_status(running, JobStatus.RUNNING)
    queued = w.submit(spec("sleep 3; exit 0"))
    assert queued in w.tick().submitted  # accepted and on the backend; its START comes next
    assert w.job(queued).status is JobStatus.SCHEDULED
    placed = w.submit(spec("exit 0"))
    w.admin.ban_provider(w.provider.address)

    rnd = w.tick()  # the ACCEPT is refused by the contract: the agent learns of its ban
    assert (queued, START) in kinds(rnd.steps)
    assert [(s.job_id, s.error.split(":")[0]) for s in rnd.skipped] == [
        (placed, f"provider {w.provider.address} is banned")
    ]
    assert w.job(queued).status is JobStatus.RUNNING  # started after the ban: metered
    assert (placed, ACCEPT) not in kinds(w.tick().steps)  # not tried again

    w.oracle.reclaim_jobs([placed])  # at once: a banned provider accepts nothing
    (returned,) = w.events(placed, "JobReturned")
    assert returned.args["reason"] == "provider banned"
    w.until_status(running, JobStatus.FINISHED)
    w.until_status(queued, JobStatus.FINISHED)
    for job_id in (running, queued):
        (ended,) = w.events(job_id, "JobEnded")
        assert ended.args["paid"] + ended.args["fee"] > 0, f"job {job_id} ran unpaid"
    w.tick()
    assert w.agent.state.jobs == {}
    assert all(not r.submitted for r in w.rounds[-3:])


def test_a_banned_providers_agent_restarts_and_reports_the_jobs_it_accepted(
    grid: Grid, tmp_path: Path
) -> None:
    w = make_world(grid, tmp_path)
    try:
        running = w.submit(spec("sleep 4; exit 0"))
        w.until_status(running, JobStatus.RUNNING)
        queued = w.submit(spec("sleep 4; exit 0"))
        assert queued in w.tick().submitted  # accepted and on the backend; no START yet
        placed = w.submit(spec("exit 0"))
    finally:
        w.agent.close()  # the agent stops (a crash, an upgrade)...
    w.admin.ban_provider(w.provider.address)  # ...and its provider is banned meanwhile

    log_path = tmp_path / "agent.log"
    proc = start_agent_process(write_toml(w.settings, tmp_path / "agent.toml"), log_path)
    try:
        deadline = time.monotonic() + 60
        while not all(w.job(j).status is JobStatus.FINISHED for j in (running, queued)):
            assert proc.poll() is None, f"the banned agent exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, log_path.read_text()
            # A live chain's blocks: the new process reads the chain's clock from a fresh head
            # (a quiet devnet's old head would put the backend's times early, see ClockOffset).
            w.rpc("evm_mine")
            time.sleep(0.2)
        assert w.job(placed).status is JobStatus.META_SCHEDULED  # never accepted
        assert proc.poll() is None, log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    for job_id in (running, queued):
        (ended,) = w.events(job_id, "JobEnded")
        assert ended.args["paid"] + ended.args["fee"] > 0, f"job {job_id} ran unpaid"
    assert len(records_for(w, queued)) == 1  # ran once, here
    text = log_path.read_text()
    assert f"provider {w.provider.address} is banned" in text
    assert "accepts no new job" in text and "ask the market's admin" in text
