"""The local backend on real processes: exit codes, cancel, time limits, queueing, restart."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from metascheduler.agent.backends import (
    BackendError,
    BackendJob,
    BackendStatus,
    csupervisor,
    local,
    make_backend,
)
from metascheduler.agent.backends.local import LocalBackend, Supervisor
from metascheduler.agent.backends.script import batch_script
from metascheduler.spec import parse_spec

S = BackendStatus


def job(
    job_id: int, payload: str, *, cpus: int = 1, limit_s: int = 60, env: str = ""
) -> BackendJob:
    spec = parse_spec(
        f"name: t{job_id}\nscript: {payload!r}\nresources: {{cpus_per_task: {cpus}, "
        f"mem_per_cpu_mb: 100}}\n{env}"
    )
    return BackendJob(job_id=job_id, spec=spec, time_limit_s=limit_s)


@pytest.fixture(params=["c", "python"])
def supervisor(request: pytest.FixtureRequest) -> Supervisor:
    """Each test on both job supervisors: the C one, and the Python fallback."""
    kind: Supervisor = request.param
    return kind


@pytest.fixture
def backend(tmp_path: Path, supervisor: Supervisor) -> LocalBackend:
    return LocalBackend(
        tmp_path / "local", cpus=2, mem_mb=1000, kill_grace_s=0.5, supervisor=supervisor
    )


def wait_for(
    backend: LocalBackend, native: str, done: Callable[[BackendStatus], bool], timeout: float = 10.0
):
    deadline = time.time() + timeout
    while True:
        st = backend.status([native])[native]
        if done(st.status) or time.time() > deadline:
            return st
        time.sleep(0.05)


def ended(state: BackendStatus) -> bool:
    return state.is_terminal


def test_exit_0_completes_with_output_and_env(backend: LocalBackend) -> None:
    native = backend.submit(
        job(1, 'echo "hello $GREETING $MS_JOB_ID $MS_CPUS"', env="env: {GREETING: there}\n")
    )
    st = wait_for(backend, native, ended)
    assert (st.status, st.exit_code) == (S.COMPLETED, 0)
    assert st.started_at is not None and st.ended_at is not None and st.ended_at >= st.started_at
    out = next((backend.workdir / "jobs").glob(f"{native}-ms-1")) / "job.out"
    assert out.read_text() == "hello there 1 1\n"


def test_agent_environment_does_not_leak(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch, supervisor: Supervisor
) -> None:
    monkeypatch.setenv("PROVIDER_PRIVATE_KEY", "0xsecret")
    fresh = LocalBackend(backend.workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    native = fresh.submit(job(1, 'echo "[${PROVIDER_PRIVATE_KEY:-}]"'))
    assert wait_for(fresh, native, ended).status is S.COMPLETED
    assert (next((fresh.workdir / "jobs").glob(f"{native}-*")) / "job.out").read_text() == "[]\n"


def test_exit_3_fails_with_its_code(backend: LocalBackend) -> None:
    native = backend.submit(job(2, "echo oops >&2; exit 3"))
    st = wait_for(backend, native, ended)
    assert (st.status, st.exit_code) == (S.FAILED, 3)


def test_cancel_kills_the_whole_tree(backend: LocalBackend, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    native = backend.submit(job(3, f"sleep 300 & echo $! > {pids}; sleep 300"))
    wait_for(backend, native, lambda _s: pids.exists() and pids.read_text().strip() != "")
    child = int(pids.read_text())
    backend.cancel(native)
    st = wait_for(backend, native, ended)
    assert st.status is S.CANCELLED
    assert not _alive(child), "the background child of the job must die with it"
    backend.cancel(native)  # cancelling an ended job is harmless


def test_time_limit_gives_timeout(backend: LocalBackend) -> None:
    native = backend.submit(job(4, "sleep 30", limit_s=1))
    st = wait_for(backend, native, ended)
    assert st.status is S.TIMEOUT
    assert st.ended_at is not None and st.started_at is not None
    assert 0.9 <= st.ended_at - st.started_at < 5


def test_extend_lets_the_job_finish(backend: LocalBackend) -> None:
    native = backend.submit(job(5, "sleep 2", limit_s=1))
    backend.extend(native, 20)
    st = wait_for(backend, native, ended)
    assert (st.status, st.exit_code) == (S.COMPLETED, 0)
    with pytest.raises(BackendError, match="already ended"):
        backend.extend(native, 30)


def test_jobs_wait_for_capacity_with_backfill(backend: LocalBackend) -> None:
    first = backend.submit(job(6, "sleep 1", cpus=1))
    big = backend.submit(job(7, "true", cpus=2))  # needs the whole machine: waits
    small = backend.submit(job(8, "sleep 1", cpus=1))  # fits beside the first: backfills
    states = backend.status([first, big, small])
    assert [states[n].status for n in (first, big, small)] == [S.RUNNING, S.QUEUED, S.RUNNING]
    assert backend.capacity().free_cpus == 0
    assert wait_for(backend, big, ended).status is S.COMPLETED
    cap = backend.capacity()
    assert (cap.free_cpus, cap.free_mem_mb) == (2, 1000)


def test_queued_job_can_be_cancelled(backend: LocalBackend) -> None:
    blocker = backend.submit(job(9, "sleep 5", cpus=2))
    waiting = backend.submit(job(10, "true", cpus=1))
    backend.cancel(waiting)
    assert backend.status([waiting])[waiting].status is S.CANCELLED
    backend.cancel(blocker)
    assert wait_for(backend, blocker, ended).status is S.CANCELLED


def test_job_larger_than_capacity_is_refused(backend: LocalBackend) -> None:
    with pytest.raises(BackendError, match="can never run here"):
        backend.submit(job(11, "true", cpus=3))


def test_a_batch_is_queued_in_order_with_refusals_in_place(backend: LocalBackend) -> None:
    got = backend.submit_many([job(1, "true"), job(2, "true", cpus=3), job(3, "sleep 30")])
    assert isinstance(got[1], BackendError) and "can never run here" in str(got[1])
    first, third = got[0], got[2]
    assert isinstance(first, str) and isinstance(third, str) and int(first) < int(third)
    assert wait_for(backend, first, ended).status is S.COMPLETED
    assert backend.status([third])[third].status is S.RUNNING
    backend.cancel(third)


def test_an_unforeseen_failure_preparing_one_job_refuses_that_job_alone(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any failure while preparing one job (here an OSError injected into writing its script)
    # is that job's refusal in words, never an exception out of the batch.
    real = local.batch_script

    def failing(j: BackendJob, workdir: Path | None = None) -> str:
        if j.job_id == 2:
            raise OSError(36, "File name too long", "/somewhere/x")
        return real(j, workdir)

    monkeypatch.setattr(local, "batch_script", failing)
    got = backend.submit_many([job(1, "true"), job(2, "true"), job(3, "true")])
    assert isinstance(got[0], str) and isinstance(got[2], str)
    assert isinstance(got[1], BackendError)
    assert str(got[1]) == "job 2 could not be prepared here (OSError: File name too long)"
    assert wait_for(backend, got[2], ended).status is S.COMPLETED


def test_news_counts_the_jobs_that_ended(backend: LocalBackend) -> None:
    before = backend.news()
    native = backend.submit(job(1, "true"))
    deadline = time.time() + 10
    while backend.news() == before:
        assert time.time() < deadline, "a job's end is not news"
        time.sleep(0.05)
    assert backend.status([native])[native].status is S.COMPLETED


def test_restarted_backend_adopts_running_and_ended_jobs(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    workdir = tmp_path / "local"
    before = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    running = before.submit(job(12, "sleep 2; exit 7"))
    quick = before.submit(job(13, "true"))
    wait_for(before, quick, ended)
    del before  # the agent "dies"; the jobs' supervisors keep going

    after = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    assert after.adopt() == {12: running, 13: quick}
    assert after.status([running])[running].status is S.RUNNING
    st = wait_for(after, running, ended)
    assert (st.status, st.exit_code) == (S.FAILED, 7)
    assert after.status(["999"])["999"].status is S.LOST


def test_job_ending_while_agent_is_down_keeps_its_exit_code(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    workdir = tmp_path / "local"
    native = LocalBackend(workdir, supervisor=supervisor, cpus=1, mem_mb=1000).submit(
        job(14, "exit 5")
    )
    time.sleep(1.0)  # ends with no backend object alive to watch it
    st = LocalBackend(workdir, supervisor=supervisor, cpus=1, mem_mb=1000).status([native])[native]
    assert (st.status, st.exit_code) == (S.FAILED, 5)


def _supervisor_pid(backend: LocalBackend, native: str) -> int:
    state = json.loads((backend.workdir / "state.json").read_text())
    pid: int = state["jobs"][native]["runner_pid"]
    return pid


def _parent_and_command(pid: int) -> tuple[int, bytes]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    parent = int(stat[stat.rindex(")") + 2 :].split()[1])
    return parent, Path(f"/proc/{pid}/cmdline").read_bytes()


def test_supervisors_are_started_by_one_process_not_new_interpreters(
    backend: LocalBackend, supervisor: Supervisor
) -> None:
    natives = [backend.submit(job(n, "sleep 5")) for n in (1, 2)]
    seen = [_parent_and_command(_supervisor_pid(backend, native)) for native in natives]
    (parent, command), other = seen
    assert other[0] == parent and parent != os.getpid(), "one zygote starts every supervisor"
    zygote = Path(f"/proc/{parent}/cmdline").read_bytes()
    assert zygote.split(b"\0")[-2] == b"--zygote"
    if supervisor == "python":
        assert command == other[1] == zygote, "a fork of the zygote, no exec since"
    else:
        # The C program, started with posix_spawn: no interpreter per job.
        program = command.split(b"\0")[0]
        assert program == backend.supervisor_binary().encode()
        assert Path(program.decode()).name.startswith("ms-supervisor-")
        assert other[1].split(b"\0")[0] == program
    for native in natives:
        backend.cancel(native)
        assert wait_for(backend, native, ended).status is S.CANCELLED


def test_a_job_starts_with_every_signal_at_its_default(backend: LocalBackend) -> None:
    """The supervisors ignore SIGHUP and SIGINT, and the Python one SIGPIPE (as any Python
    program): a job inherited those, so ``yes | head -1`` ended in a write error, and a ^C
    sent to a job's group did nothing. (Signals 32 and up are the C library's own: its
    ``posix_spawn`` sets some of them ignored in every program it starts.)"""
    native = backend.submit(job(1, "grep -E '^Sig(Ign|Blk)' /proc/self/status; yes | head -1"))
    st = wait_for(backend, native, ended)
    folder = next((backend.workdir / "jobs").glob(f"{native}-*"))
    out, err = (folder / "job.out").read_text(), (folder / "job.err").read_text()
    assert st.status is S.COMPLETED, (st, out, err)
    fields = dict(line.split(":\t") for line in out.splitlines() if ":" in line)
    classic = 0x7FFFFFFF  # signals 1 to 31
    assert int(fields["SigBlk"], 16) & classic == 0, out
    assert int(fields["SigIgn"], 16) & classic == 0, out
    assert out.endswith("\ny\n") and "Broken pipe" not in err, (out, err)


def test_without_a_compiler_jobs_run_under_the_python_supervisor_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pip-installed agent builds the C supervisor on first use; with no ``cc`` on PATH (and
    none built next to its source), its jobs still run, under the Python one, and the agent
    says once why and how to get the faster path."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-compiler-here") + ":/usr/bin:/bin")
    monkeypatch.setattr(csupervisor.shutil, "which", lambda _name: None)
    monkeypatch.setattr(csupervisor, "SOURCE", tmp_path / "pkg" / csupervisor.SOURCE.name)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / csupervisor.SOURCE.name).write_bytes(
        (Path(local.__file__).with_name("supervisor.c")).read_bytes()
    )
    backend = LocalBackend(tmp_path / "local", cpus=2, mem_mb=1000)
    with caplog.at_level(logging.WARNING, logger="metascheduler.agent.backends.local"):
        natives = [backend.submit(job(n, f"exit {n}")) for n in (1, 2)]
        codes = [wait_for(backend, n, ended).exit_code for n in natives]
    assert codes == [1, 2]
    notices = [r.getMessage() for r in caplog.records if "C job supervisor" in r.getMessage()]
    assert len(notices) == 1, notices
    assert "no C compiler" in notices[0] and "gcc, libc6-dev" in notices[0]
    assert not list((tmp_path / "local").glob("ms-supervisor-*"))
    folder = next((backend.workdir / "jobs").glob(f"{natives[0]}-*"))
    assert not (folder / local.COMMAND_ARGV).exists()
    strict = LocalBackend(tmp_path / "strict", supervisor="c")
    with pytest.raises(BackendError, match="no C job supervisor: no C compiler"):
        strict.submit(job(3, "true"))


def test_a_pip_installed_agent_builds_the_c_supervisor_once_in_its_workdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "pkg" / csupervisor.SOURCE.name
    source.parent.mkdir()
    source.write_bytes(csupervisor.SOURCE.read_bytes())
    monkeypatch.setattr(csupervisor, "SOURCE", source)  # nothing built beside it
    backend = LocalBackend(tmp_path / "local", cpus=2, mem_mb=1000, supervisor="c")
    native = backend.submit(job(1, "exit 4"))
    assert wait_for(backend, native, ended).exit_code == 4
    built = list((tmp_path / "local").glob("ms-supervisor-*"))
    assert [b.name for b in built] == [csupervisor.binary_name()]
    assert backend.supervisor_binary() == str(built[0])
    assert not list((tmp_path / "local").glob(".ms-supervisor-*")), "no temporary file left"


def test_a_supervisor_that_cannot_start_fails_its_job_and_keeps_the_zygote(
    tmp_path: Path,
) -> None:
    """(The C supervisor is a program, which may fail to start; a fork of the zygote cannot.)"""
    backend = LocalBackend(tmp_path / "local", cpus=2, mem_mb=1000, supervisor="c")
    first = backend.submit(job(1, "true"))
    wait_for(backend, first, ended)
    zygote = backend._zygote
    backend._binary = str(backend.workdir / "no-such-supervisor")
    native = backend.submit(job(2, "true"))
    st = backend.status([native])[native]
    assert st.status is S.FAILED and st.reason is not None
    assert "could not start its supervisor" in st.reason and "no-such-supervisor" in st.reason
    assert backend._zygote is zygote and zygote is not None and zygote.poll() is None


def test_a_dead_zygote_is_started_again_and_its_jobs_keep_running(
    backend: LocalBackend,
) -> None:
    first = backend.submit(job(1, "sleep 1; exit 4"))
    zygote = _parent_and_command(_supervisor_pid(backend, first))[0]
    assert zygote != os.getpid(), "the supervisor is a child of the backend's own process"
    os.kill(zygote, signal.SIGKILL)
    second = backend.submit(job(2, "exit 6"))
    assert _parent_and_command(_supervisor_pid(backend, second))[0] != zygote
    assert wait_for(backend, second, ended).exit_code == 6
    assert wait_for(backend, first, ended).exit_code == 4
    backend.close()  # the agent stops: what runs goes on, and a later call starts a new zygote
    assert wait_for(backend, backend.submit(job(3, "exit 0")), ended).status is S.COMPLETED


def test_a_call_that_changes_nothing_leaves_the_state_file_alone(
    backend: LocalBackend,
) -> None:
    native = backend.submit(job(1, "true"))
    wait_for(backend, native, ended)
    state = backend.workdir / "state.json"
    before = state.stat()
    backend.status([native])
    backend.capacity()
    after = state.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_state_file_written_by_another_process_is_read_again(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    workdir = tmp_path / "local"
    ours = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    first = ours.submit(job(1, "true"))
    assert wait_for(ours, first, ended).status is S.COMPLETED
    theirs = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    second = theirs.submit(job(2, "exit 3"))
    assert wait_for(ours, second, ended).exit_code == 3
    assert int(ours.submit(job(3, "true"))) == int(second) + 1


def test_make_backend() -> None:
    with pytest.raises(BackendError, match="unknown backend kind 'pbs'"):
        make_backend("pbs")
    with pytest.raises(BackendError, match="bad options for the local backend"):
        make_backend("local", nonsense=1)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status and os.path.exists(f"/proc/{pid}")


def test_a_job_whose_folder_exists_starts_no_mkdir_for_it(tmp_path: Path) -> None:
    """Every short job runs its batch script: a ``mkdir`` process there is a millisecond of CPU
    per job. With no ``mkdir`` to be found, the script still enters a folder that exists, and
    still fails (code 125) on one it would have to make."""
    here = tmp_path / "work"
    here.mkdir()
    for folder, code in ((here, 0), (tmp_path / "new", 125)):
        script = tmp_path / "job.sh"
        script.write_text(batch_script(job(1, 'test "$PWD" = ' + str(folder)), folder))
        ran = subprocess.run(["/bin/bash", str(script)], env={"PATH": str(tmp_path / "none")})
        assert ran.returncode == code, folder


def test_an_ended_jobs_record_is_written_once_not_at_every_call(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    """A provider keeps its ended jobs' records for days: rewritten at each call (every round
    of the agent), they made each call cost in proportion to every job run that week."""
    workdir = tmp_path / "local"
    backend = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    natives = [backend.submit(job(n, f"exit {n}")) for n in (1, 2, 3)]
    for native in natives:
        wait_for(backend, native, ended)
    live = json.loads((workdir / "state.json").read_text())["jobs"]
    assert live == {}, "the state file holds the jobs queued or running only"
    log = workdir / "ended.jsonl"
    before = log.read_text()
    assert sorted(json.loads(line)["native_id"] for line in before.splitlines()) == natives
    running = backend.submit(job(4, "sleep 30"))
    backend.status(natives)
    assert log.read_text() == before, "a call rewrote the records of jobs ended before it"
    again = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)  # a restarted agent
    codes = {n: st.exit_code for n, st in again.status(natives).items()}
    assert codes == dict(zip(natives, (1, 2, 3), strict=True))
    assert again.adopt()[2] == natives[1]
    backend.cancel(running)


def test_a_line_cut_by_a_crash_loses_no_ended_job(tmp_path: Path, supervisor: Supervisor) -> None:
    workdir = tmp_path / "local"
    backend = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    first = backend.submit(job(1, "exit 1"))
    wait_for(backend, first, ended)
    log = workdir / "ended.jsonl"
    log.write_text(log.read_text() + '{"native_id": "9", "job_')  # the agent died mid-line
    second = backend.submit(job(2, "exit 2"))
    wait_for(backend, second, ended)
    again = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    codes = {n: st.exit_code for n, st in again.status([first, second]).items()}
    assert codes == {first: 1, second: 2}


def test_a_state_file_of_the_earlier_layout_keeps_its_ended_jobs(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    """Ended records used to stay in state.json: an agent upgraded in place still knows them."""
    workdir = tmp_path / "local"
    backend = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    native = backend.submit(job(1, "exit 3"))
    wait_for(backend, native, ended)
    record = json.loads((workdir / "ended.jsonl").read_text())
    (workdir / "ended.jsonl").unlink()
    state = {"jobs": {native: record}, "next_id": int(native) + 1, "version": 1}
    (workdir / "state.json").write_text(json.dumps(state))
    again = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000)
    assert again.status([native])[native].exit_code == 3
    assert json.loads((workdir / "state.json").read_text())["jobs"] == {}
    assert json.loads((workdir / "ended.jsonl").read_text())["exit_code"] == 3


class Killed(BaseException):
    """Stands for a SIGKILL of the agent at one point of a backend call."""


@pytest.mark.parametrize("at", ["after the start", "between the claim and the fork's answer"])
def test_a_job_started_by_a_backend_killed_before_saving_it_never_runs_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: str, supervisor: Supervisor
) -> None:
    """The agent died while its backend started a batch: the job's supervisor ran, the records
    were not saved. The restarted backend used to have no record of the job, so the agent's
    adopt() did not find it, the job was submitted again under the same native id, and it ran
    twice into the same output (the soak's logs_doubled)."""
    workdir = tmp_path / "local"
    first = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000, kill_grace_s=0.5)
    real_save, real_fork = LocalBackend._save, LocalBackend._fork_supervisor
    saves = 0

    def save_then_die(self: LocalBackend, records: object) -> None:
        nonlocal saves
        saves += 1
        if saves > 1:  # the write-ahead went through; the record of the start never does
            raise Killed
        real_save(self, records)  # type: ignore[arg-type]

    def fork_then_die(self: LocalBackend, job_dir: Path) -> int:
        real_fork(self, job_dir)
        raise Killed

    monkeypatch.setattr(LocalBackend, "_save", save_then_die)
    if at != "after the start":
        monkeypatch.setattr(LocalBackend, "_fork_supervisor", fork_then_die)
    with pytest.raises(Killed):
        first.submit(job(7, "echo ran once"))
    monkeypatch.undo()

    again = LocalBackend(workdir, supervisor=supervisor, cpus=2, mem_mb=1000, kill_grace_s=0.5)
    adopted = again.adopt()
    assert 7 in adopted, "the restarted backend knows the job it started"
    st = wait_for(again, adopted[7], ended)
    out = next((workdir / "jobs").glob(f"{adopted[7]}-ms-7")) / "job.out"
    deadline = time.time() + 10  # the orphaned supervisor may still be writing
    while not (out.exists() and out.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a second run, were there one, would have written by now
    assert out.read_text() == "ran once\n"
    if at == "after the start":
        assert (st.status, st.exit_code) == (S.COMPLETED, 0)
    else:
        # The supervisor is not named anywhere: its end is not known, but nothing ran twice.
        assert st.status in (S.COMPLETED, S.LOST)
    # A second submission of the same chain job gets a new native id, never the old one.
    assert again.submit(job(8, "true")) != adopted[7]


@pytest.mark.parametrize("compiler", ["cc", "musl-gcc"])
def test_the_c_supervisor_builds_without_a_warning(tmp_path: Path, compiler: str) -> None:
    """Against glibc and against musl (the build the agent prefers where musl-tools is)."""
    if shutil.which(compiler) is None:
        pytest.skip(f"no {compiler} here (bash scripts/sandbox.sh install installs it)")
    strict = ["-Wall", "-Wextra", "-Wformat=2", "-Wshadow", "-Werror", "-fsyntax-only"]
    done = subprocess.run(
        [compiler, *strict, str(csupervisor.SOURCE)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr


def test_the_c_supervisor_writes_runner_log_only_to_say_what_went_wrong(tmp_path: Path) -> None:
    """Its output is /dev/null (each file made costs a job an inode); its own troubles, such as
    a result it cannot write, still reach the job folder's ``runner.log``."""
    backend = LocalBackend(tmp_path / "local", cpus=2, mem_mb=1000, supervisor="c")
    fine = backend.submit(job(1, "true"))
    assert wait_for(backend, fine, ended).status is S.COMPLETED
    folder = next((backend.workdir / "jobs").glob(f"{fine}-*"))
    assert not (folder / "runner.log").exists()
    blocked = tmp_path / "blocked"
    (blocked / "result.tmp").mkdir(parents=True)  # where its result would be written
    (blocked / "command.argv").write_bytes(b"plain\0true\0")
    done = subprocess.run([backend.supervisor_binary(), str(blocked), "0.5"], check=False)
    assert done.returncode == 1
    assert (blocked / "runner.log").read_text() == (
        "supervisor: write result.tmp: Is a directory\n"
    )
