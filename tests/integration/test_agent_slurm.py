"""The provider agent end to end on a real anvil and the real one-node Slurm of
scripts/slurm.sh (partition ``alpha``): exit codes, billing, cancel, out of credits, top-up,
and an agent killed and restarted mid-run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from metascheduler import billing
from metascheduler.agent.backends import BackendStatus
from metascheduler.agent.backends.slurm import SlurmBackend, format_time_limit
from metascheduler.agent.service import build
from metascheduler.chain import JobStatus
from tests.conftest import Grid
from tests.integration.agentkit import (
    CREDIT,
    World,
    make_world,
    slurm_conf_or_skip,
    spec,
    start_agent_process,
    wait_running_then_sigkill,
    write_toml,
)

pytestmark = [pytest.mark.slurm, pytest.mark.chain]


@pytest.fixture(scope="module")
def conf() -> str:
    return slurm_conf_or_skip()


def slurm_world(grid: Grid, tmp: Path, conf: str) -> World:
    return make_world(
        grid,
        tmp,
        backend="slurm",
        slurm={"partition": "alpha", "output_dir": str(tmp / "slurm-out"), "slurm_conf": conf},
        hardware={"nodes": 1, "cpus": 2, "gpus": 0, "mem_mb": 4096},
    )


@pytest.fixture
def world(grid: Grid, tmp_path: Path, conf: str) -> Iterator[World]:
    w = slurm_world(grid, tmp_path, conf)
    yield w
    # Leave the shared cluster empty for whoever comes next.
    for rec in w.agent.state.jobs.values():
        if rec.native_id:
            w.agent.backend.cancel(rec.native_id)
    w.agent.close()


def slurm(conf: str, *args: str) -> str:
    return subprocess.run(
        list(args),
        env={**os.environ, "SLURM_CONF": conf},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def native_of(w: World, job_id: int) -> str:
    native = w.agent.state.jobs[job_id].native_id
    assert native is not None
    return native


def slurm_backend(w: World) -> SlurmBackend:
    assert isinstance(w.agent.backend, SlurmBackend)
    return w.agent.backend


def test_exit_0_is_finished_and_billed_exit_3_is_failed(world: World, conf: str) -> None:
    w = world
    ok = w.submit(spec("sleep 3; echo done"))
    bad = w.submit(spec("exit 3"))
    first = w.tick()
    assert sorted(first.submitted) == [ok, bad]
    natives = {j: native_of(w, j) for j in (ok, bad)}
    # Named by the on-chain id, on the provider's partition.
    line = slurm(
        conf, "squeue", "--noheader", "--states=all", "--format=%j|%P", f"--jobs={natives[ok]}"
    )
    assert line.strip() == f"{w.agent.prefix}{ok}|alpha"

    w.until_status(bad, JobStatus.FAILED)
    w.until_status(ok, JobStatus.FINISHED)
    (ended_bad,) = w.events(bad, "JobEnded")
    assert ended_bad.args["exitCode"] == 3
    (ended_ok,) = w.events(ok, "JobEnded")
    assert ended_ok.args["exitCode"] == 0
    start, end = w.run_window(ok)
    assert end - start >= 1
    paid = ended_ok.args["paid"] + ended_ok.args["fee"]
    assert (
        paid
        == billing.cost(price=w.job(ok).price_per_minute, elapsed_s=end - start, escrow=CREDIT)
        > 0
    )
    out = slurm_backend(w).output_dir / f"job-{ok}.out"
    assert out.read_text() == "done\n"


def test_cancel_while_running_removes_the_slurm_job(world: World, conf: str) -> None:
    w = world
    job_id = w.submit(spec("sleep 300"))
    w.until_status(job_id, JobStatus.RUNNING)
    native = native_of(w, job_id)
    w.customer.cancel_job(job_id)
    assert w.tick().killed == [job_id]
    st = w.tick_until(
        "Slurm to cancel the job",
        lambda: s if (s := slurm_backend(w).status([native])[native]).status.is_terminal else None,
    )
    assert st.status is BackendStatus.CANCELLED
    assert slurm(conf, "squeue", "--noheader", "--states=PD,R", f"--jobs={native}").strip() == ""
    start, end = w.run_window(job_id)
    (ended,) = w.events(job_id, "JobEnded")
    assert ended.args["paid"] + ended.args["fee"] == billing.cost(
        price=w.job(job_id).price_per_minute, elapsed_s=end - start, escrow=CREDIT
    )
    earned = w.reader.balance_of(w.provider.address)
    w.tick()
    assert w.reader.balance_of(w.provider.address) == earned  # billing stopped


def test_out_of_credits_kills_the_slurm_job(world: World) -> None:
    w = world
    escrow = 60_000  # 60 s
    job_id = w.submit(spec("sleep 300"), escrow=escrow)
    w.until_status(job_id, JobStatus.RUNNING)
    native = native_of(w, job_id)
    w.advance_chain(120)
    rnd = w.tick()
    assert rnd.expired == [job_id] and rnd.killed == [job_id]
    (ended,) = w.events(job_id, "JobEnded")
    assert ended.args["to"] == JobStatus.OUT_OF_CREDITS
    assert ended.args["paid"] + ended.args["fee"] == escrow
    st = w.tick_until(
        "Slurm to kill the job",
        lambda: s if (s := slurm_backend(w).status([native])[native]).status.is_terminal else None,
    )
    assert st.status is BackendStatus.CANCELLED


def _time_limit_minutes(conf: str, native: str) -> int:
    show = slurm(conf, "scontrol", "show", "job", "-o", native)
    limit = next(f for f in show.split() if f.startswith("TimeLimit=")).split("=", 1)[1]
    days, _, hms = limit.rpartition("-")
    h, m, _s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m


def test_top_up_extends_the_slurm_time_limit(world: World, conf: str) -> None:
    w = world
    job_id = w.submit(spec("sleep 300"), escrow=100_000)  # 100 s
    w.until_status(job_id, JobStatus.RUNNING)
    w.tick()
    native = native_of(w, job_id)
    before = _time_limit_minutes(conf, native)
    assert before == int(format_time_limit(w.agent.state.jobs[job_id].time_limit_s or 0))

    w.customer.top_up(job_id, 600_000)  # 600 s more
    rnd = w.tick()
    assert set(rnd.extended) == {job_id}
    after = _time_limit_minutes(conf, native)
    assert after == int(format_time_limit(rnd.extended[job_id]))
    assert after - before >= 10


def test_agent_killed_mid_run_adopts_its_slurm_job(grid: Grid, tmp_path: Path, conf: str) -> None:
    w = slurm_world(grid, tmp_path, conf)
    w.agent.close()  # the real agent is the process below
    log_path = tmp_path / "agent.log"
    proc = start_agent_process(write_toml(w.settings, tmp_path / "agent.toml"), log_path)
    job_id = w.submit(spec("sleep 5; exit 0"))
    wait_running_then_sigkill(w, job_id, proc, log_path)

    restarted = build(w.settings)
    restarted.start()
    w.agent = restarted
    try:
        native = native_of(w, job_id)  # adopted from the state file the killed agent left
        w.until_status(job_id, JobStatus.FINISHED)
        assert all(not r.submitted for r in w.rounds)
        name = f"{restarted.prefix}{job_id}"
        # Every Slurm job of this name, queued or ended (sacct -c ignores --name: filter here).
        queued = slurm(conf, "squeue", "--noheader", "--states=all", "--format=%i|%j")
        ended = slurm(conf, "sacct", "-c", "--noheader", "--parsable2", "--format=JobID,JobName")
        ids = {
            line.split("|")[0]
            for line in (queued + ended).splitlines()
            if line.strip().endswith(f"|{name}")
        }
        assert ids == {native}  # one Slurm job, ever: the one started before the kill
    finally:
        restarted.close()
