"""The Slurm backend against the real one-node Slurm of scripts/slurm.sh (partition alpha)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from metascheduler.agent.backends import BackendError, BackendJob, BackendStatus
from metascheduler.agent.backends.slurm import SlurmBackend
from metascheduler.spec import parse_spec
from tests.integration.agentkit import slurm_conf_or_skip as _slurm_conf

pytestmark = pytest.mark.slurm
S = BackendStatus
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def conf() -> str:
    return _slurm_conf()


@pytest.fixture
def backend(conf: str, tmp_path: Path) -> SlurmBackend:
    return SlurmBackend(
        "alpha", tmp_path / "out", slurm_conf=conf, name_prefix=f"mst{os.getpid()}-"
    )


def job(job_id: int, payload: str, *, limit_s: int = 120, cpus: int = 1, prefix: str) -> BackendJob:
    spec = parse_spec(
        f"name: t\nscript: {payload!r}\nresources: {{cpus_per_task: {cpus}, mem_per_cpu_mb: 100}}\n"
        "env: {GREETING: hi}\n"
    )
    return BackendJob(job_id=job_id, spec=spec, time_limit_s=limit_s, name=f"{prefix}{job_id}")


def wait(backend: SlurmBackend, native: str, until: set[BackendStatus], timeout: float = 30):
    deadline = time.time() + timeout
    while True:
        st = backend.status([native])[native]
        if st.status in until or time.time() > deadline:
            return st
        time.sleep(0.2)


def test_exit_0_and_exit_3(backend: SlurmBackend) -> None:
    p = backend.name_prefix
    ok = backend.submit(job(1, 'echo "$GREETING $MS_JOB_ID"', prefix=p))
    bad = backend.submit(job(2, "exit 3", prefix=p))
    st_ok = wait(backend, ok, {S.COMPLETED, S.FAILED})
    st_bad = wait(backend, bad, {S.COMPLETED, S.FAILED})
    assert (st_ok.status, st_ok.exit_code) == (S.COMPLETED, 0)
    assert (st_bad.status, st_bad.exit_code) == (S.FAILED, 3)
    assert (backend.output_dir / "job-1.out").read_text() == "hi 1\n"
    assert st_ok.started_at is not None and st_ok.ended_at is not None


def test_cancel_extend_and_adopt(backend: SlurmBackend, conf: str) -> None:
    p = backend.name_prefix
    native = backend.submit(job(3, "sleep 300", limit_s=120, prefix=p))
    assert wait(backend, native, {S.RUNNING}).status is S.RUNNING

    backend.extend(native, 600)
    show = subprocess.run(
        ["scontrol", "show", "job", "-o", native],
        env={**os.environ, "SLURM_CONF": conf},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert "TimeLimit=00:10:00" in show.stdout

    restarted = SlurmBackend("alpha", backend.output_dir, slurm_conf=conf, name_prefix=p)
    assert restarted.adopt().get(3) == native

    restarted.cancel(native)
    st = wait(restarted, native, {S.CANCELLED})
    assert st.status is S.CANCELLED
    restarted.cancel(native)  # again: harmless
    with pytest.raises(BackendError) as info:
        restarted.extend(native, 900)
    assert info.value.returncode == 1 and "already finished" in (info.value.stderr or "")


def test_refused_sbatch_carries_stderr(backend: SlurmBackend, conf: str, tmp_path: Path) -> None:
    with pytest.raises(BackendError) as info:
        backend.submit(job(4, "true", cpus=1000, prefix=backend.name_prefix))
    err = info.value
    assert err.command and err.command[0] == "sbatch" and err.returncode == 1
    assert "More processors requested than permitted" in (err.stderr or "")

    nowhere = SlurmBackend("nope", tmp_path, slurm_conf=conf)
    with pytest.raises(BackendError, match="Invalid partition name"):
        nowhere.submit(job(5, "true", prefix="x"))


def test_unknown_job_is_lost_and_capacity_reads(backend: SlurmBackend) -> None:
    assert backend.status(["99999999"])["99999999"].status is S.LOST
    cap = backend.capacity()
    assert cap.total_cpus >= 1 and 0 <= cap.free_cpus <= cap.total_cpus
    assert cap.total_mem_mb > 0
