"""Run jobs as processes on this machine, within a declared capacity.

For small providers and the devnet. Each job gets a folder ``<workdir>/jobs/<native id>-<name>/``
with its script, ``job.out``, ``job.err`` and, when it ends, ``result.json``. A small supervisor
process per job (``local_runner.py``) runs it in its own process group, enforces its time limit and
records its exit code, independently of the agent: jobs survive an agent restart, and jobs that
end while the agent is down still have their result on disk.

Scheduling happens whenever the backend is called (the agent polls ``status`` every few seconds):
jobs that do not fit wait ``QUEUED`` in submission order, and a later, smaller job that fits starts
first (backfill). The backend's own records live in ``<workdir>/state.json``; one agent per workdir.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metascheduler.agent.backends import sandbox
from metascheduler.agent.backends.base import (
    Backend,
    BackendError,
    BackendJob,
    BackendJobInfo,
    BackendStatus,
    Capacity,
    parse_job_name,
    unforeseen,
)
from metascheduler.agent.backends.host import minimal_env, resolve_workdir
from metascheduler.agent.backends.sandbox import SandboxPolicy
from metascheduler.agent.backends.script import batch_script
from metascheduler.agent.envelope.staging import Stager

S = BackendStatus
RUNNER = Path(__file__).with_name("local_runner.py")
STATE_VERSION = 1


@dataclass
class _Record:
    native_id: str
    job_id: int
    name: str
    cpus: int
    mem_mb: int
    gpus: int
    time_limit_s: int
    submitted_at: float
    dir: str
    state: str = S.QUEUED.value
    runner_pid: int | None = None
    runner_start_ticks: int | None = None  # /proc start time: tells our pid from a reused one
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None


def _proc_start_ticks(pid: int) -> int | None:
    """Start time of a live, non-zombie process (clock ticks since boot), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # zombie or dead: not reaped, but not running either
        return None
    return int(fields[19])


def _machine_mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


class LocalBackend(Backend):
    """Jobs as local processes. Capacity defaults to this machine's CPUs and memory, no GPUs."""

    name = "local"

    def __init__(
        self,
        workdir: str | Path,
        *,
        cpus: int | None = None,
        mem_mb: int | None = None,
        gpus: int = 0,
        kill_grace_s: float = 5.0,
        retention_s: float = 7 * 24 * 3600,
        env: dict[str, str] | None = None,
        name_prefix: str | None = None,
        sandbox: SandboxPolicy | None = None,
        stager: Stager | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        #: None: jobs run as the agent's user, unconfined (tests of the bookkeeping only).
        self.sandbox = sandbox
        self.stager = stager
        # With a prefix, adopt() returns only jobs named by it (as the Slurm backend does), so a
        # workdir reused by another deployment never hands its jobs to this one.
        self.name_prefix = name_prefix
        self.total = Capacity(
            total_cpus=cpus or os.cpu_count() or 1,
            free_cpus=0,
            total_mem_mb=mem_mb or _machine_mem_mb(),
            free_mem_mb=0,
            total_gpus=gpus,
            free_gpus=0,
        )
        self.kill_grace_s = kill_grace_s
        self.retention_s = retention_s
        self._env = env if env is not None else minimal_env()
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        (self.workdir / "jobs").mkdir(parents=True, exist_ok=True)
        self._state_file = self.workdir / "state.json"
        self._lock_file = self.workdir / "state.lock"

    # -- persistence ------------------------------------------------------------------------

    @contextmanager
    def _records(self) -> Iterator[dict[str, Any]]:
        """The state file, locked for one read-modify-write; saved when the block ends."""
        with open(self._lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._load()
                yield state
                tmp = self._state_file.with_suffix(".tmp")
                # One line, no indent: json's C encoder takes no indent, and this file is read
                # and written at every call, thousands of records long on a busy provider.
                tmp.write_text(json.dumps(state, sort_keys=True))
                os.replace(tmp, self._state_file)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        if not self._state_file.exists():
            return {"version": STATE_VERSION, "next_id": 1, "jobs": {}}
        try:
            state: dict[str, Any] = json.loads(self._state_file.read_text())
        except ValueError as exc:
            raise BackendError(
                f"local backend state {self._state_file} is not valid JSON ({exc}); "
                "move it aside to start afresh (jobs it tracked will be reported LOST)"
            ) from None
        return state

    @staticmethod
    def _jobs(state: dict[str, Any]) -> dict[str, _Record]:
        return {k: _Record(**v) for k, v in state["jobs"].items()}

    @staticmethod
    def _store(state: dict[str, Any], jobs: dict[str, _Record]) -> None:
        # (a record holds plain values only: its fields, without asdict's deep copy)
        state["jobs"] = {k: dict(vars(r)) for k, r in jobs.items()}

    # -- scheduling -------------------------------------------------------------------------

    def _tick(self, state: dict[str, Any]) -> dict[str, _Record]:
        """Bring records up to date: reap, collect results, start what fits, forget old jobs."""
        for nid, child in list(self._children.items()):
            if child.poll() is not None:  # reap our finished supervisors: no zombies of ours
                del self._children[nid]
        jobs = self._jobs(state)
        now = time.time()
        for rec in jobs.values():
            if rec.state == S.RUNNING.value:
                self._refresh_running(rec)
        used_cpus = sum(r.cpus for r in jobs.values() if r.state == S.RUNNING.value)
        used_mem = sum(r.mem_mb for r in jobs.values() if r.state == S.RUNNING.value)
        used_gpus = sum(r.gpus for r in jobs.values() if r.state == S.RUNNING.value)
        queued = sorted(
            (r for r in jobs.values() if r.state == S.QUEUED.value),
            key=lambda r: (r.submitted_at, int(r.native_id)),
        )
        for rec in queued:
            fits = (
                used_cpus + rec.cpus <= self.total.total_cpus
                and used_mem + rec.mem_mb <= self.total.total_mem_mb
                and used_gpus + rec.gpus <= self.total.total_gpus
            )
            if fits:
                self._start(rec)
                used_cpus, used_mem, used_gpus = (
                    used_cpus + rec.cpus,
                    used_mem + rec.mem_mb,
                    used_gpus + rec.gpus,
                )
        for nid, rec in list(jobs.items()):
            if rec.ended_at is not None and now - rec.ended_at > self.retention_s:
                del jobs[nid]
        self._store(state, jobs)
        return jobs

    def _refresh_running(self, rec: _Record) -> None:
        job_dir = Path(rec.dir)
        started = _read_json(job_dir / "started.json")
        if started:
            rec.started_at = started["started_at"]
        result = _read_json(job_dir / "result.json")
        if result is None and not self._runner_alive(rec):
            # It may have written its result just before exiting: look once more.
            result = _read_json(job_dir / "result.json")
            if result is None:
                rec.state, rec.ended_at = S.LOST.value, time.time()
                rec.reason = "its supervisor process died without recording a result"
                return
        if result is not None:
            rec.state = result["state"]
            rec.exit_code = result["exit_code"]
            rec.ended_at = result["ended_at"]
            rec.reason = result.get("reason")
            if rec.state == S.FAILED.value:
                rec.reason = sandbox.reason_from_report(job_dir) or rec.reason

    def _runner_alive(self, rec: _Record) -> bool:
        if rec.runner_pid is None:
            return False
        ticks = _proc_start_ticks(rec.runner_pid)
        return ticks is not None and ticks == rec.runner_start_ticks

    def _start(self, rec: _Record) -> None:
        job_dir = Path(rec.dir)
        (job_dir / "limit").write_text(str(rec.time_limit_s))
        log = open(job_dir / "runner.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            child = subprocess.Popen(
                [sys.executable, "-I", str(RUNNER), str(job_dir), str(self.kill_grace_s)],
                cwd=job_dir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # not in the agent's group: a ^C to the agent spares jobs
            )
        except OSError as exc:
            rec.state, rec.ended_at = S.FAILED.value, time.time()
            rec.reason = f"could not start its supervisor: {exc}"
            return
        finally:
            log.close()
        self._children[rec.native_id] = child
        rec.state = S.RUNNING.value
        rec.runner_pid = child.pid
        rec.runner_start_ticks = _proc_start_ticks(child.pid)
        rec.started_at = time.time()

    # -- Backend ----------------------------------------------------------------------------

    def news(self) -> int:
        # A supervisor exits when its job ends (results on disk): a cheap waitpid per child.
        return sum(1 for child in self._children.values() if child.poll() is not None)

    def submit(self, job: BackendJob) -> str:
        native = self.submit_many([job])[0]
        if isinstance(native, BackendError):
            raise native
        return native

    def submit_many(self, jobs: Sequence[BackendJob]) -> list[str | BackendError]:
        # One read and write of the state file and one scheduling pass for the whole batch:
        # both cost as much for one job as for a hundred.
        out: list[str | BackendError] = []
        with self._records() as state:
            records = self._jobs(state)
            for job in jobs:
                refusal = self._never_fits(job)
                if refusal is not None:
                    out.append(refusal)
                    continue
                native = str(state["next_id"])
                state["next_id"] += 1
                try:
                    records[native] = self._prepare(job, native)
                except BackendError as exc:  # its sandbox cannot take it
                    out.append(exc)
                    continue
                except Exception as exc:
                    out.append(unforeseen(job, exc))
                    continue
                out.append(native)
            self._store(state, records)
            self._tick(state)
        return out

    def _never_fits(self, job: BackendJob) -> BackendError | None:
        spec = job.spec
        cap = self.total
        if (
            spec.cpus <= cap.total_cpus
            and spec.mem_mb <= cap.total_mem_mb
            and spec.gpus <= cap.total_gpus
        ):
            return None
        return BackendError(
            f"job {job.job_id} can never run here: it asks for {spec.cpus} CPUs, "
            f"{spec.mem_mb} MB, {spec.gpus} GPUs; this backend has {cap.total_cpus} CPUs, "
            f"{cap.total_mem_mb} MB, {cap.total_gpus} GPUs. Refuse the placement"
        )

    def _prepare(self, job: BackendJob, native: str) -> _Record:
        """The job's folder, script and command, and its record (queued). Raises
        ``BackendError`` when its sandbox cannot run it here."""
        spec = job.spec
        job_dir = self.workdir / "jobs" / f"{native}-{job.name}"
        job_dir.mkdir(parents=True, exist_ok=True)
        workdir = resolve_workdir(spec.workdir, job_dir / sandbox.WORK_DIR)
        script = batch_script(job, workdir)
        command = sandbox.confine(self.sandbox, self.stager, job, job_dir, self.workdir, script)
        if command is None:
            (job_dir / "job.sh").write_text(script)
            command = ["bash", str(job_dir / "job.sh")]
        (job_dir / "command.json").write_text(json.dumps(command))
        return _Record(
            native_id=native,
            job_id=job.job_id,
            name=job.name,
            cpus=spec.cpus,
            mem_mb=spec.mem_mb,
            gpus=spec.gpus,
            time_limit_s=job.time_limit_s,
            submitted_at=time.time(),
            dir=str(job_dir),
        )

    def status(self, native_ids: Sequence[str]) -> dict[str, BackendJobInfo]:
        with self._records() as state:
            jobs = self._tick(state)
        out = {}
        for nid in native_ids:
            rec = jobs.get(nid)
            if rec is None:
                out[nid] = BackendJobInfo(nid, S.LOST, reason="no record in the local backend")
                continue
            out[nid] = BackendJobInfo(
                native_id=nid,
                status=S(rec.state),
                exit_code=rec.exit_code,
                started_at=rec.started_at,
                ended_at=rec.ended_at,
                reason=rec.reason,
                raw_state=rec.state,
            )
        return out

    def cancel(self, native_id: str) -> None:
        with self._records() as state:
            jobs = self._tick(state)
            rec = jobs.get(native_id)
            if rec is None or S(rec.state).is_terminal:
                return
            if rec.state == S.QUEUED.value:
                rec.state, rec.ended_at, rec.reason = S.CANCELLED.value, time.time(), "cancelled"
            else:
                # The supervisor kills the job's group and records CANCELLED. It polls the file
                # anyway; the signal only makes it quicker, and is sent once started.json shows
                # its handler is in place (before that, SIGTERM would kill it and lose the job).
                (Path(rec.dir) / "cancel").touch()
                started = (Path(rec.dir) / "started.json").exists()
                if started and self._runner_alive(rec) and rec.runner_pid is not None:
                    os.kill(rec.runner_pid, signal.SIGTERM)
            self._store(state, jobs)

    def extend(self, native_id: str, time_limit_s: int) -> None:
        with self._records() as state:
            jobs = self._tick(state)
            rec = jobs.get(native_id)
            if rec is None or S(rec.state).is_terminal:
                why = "is unknown" if rec is None else f"already ended ({rec.state})"
                raise BackendError(f"cannot extend local job {native_id}: it {why}")
            rec.time_limit_s = time_limit_s
            tmp = Path(rec.dir) / "limit.tmp"
            tmp.write_text(str(time_limit_s))
            os.replace(tmp, Path(rec.dir) / "limit")
            self._store(state, jobs)

    def adopt(self) -> dict[int, str]:
        with self._records() as state:
            jobs = self._tick(state)
        best: dict[int, tuple[bool, int]] = {}
        for rec in jobs.values():
            if self.name_prefix is not None:
                chain_id = parse_job_name(rec.name, self.name_prefix)
                if chain_id is None:
                    continue
            else:
                parsed = parse_job_name(rec.name)
                chain_id = rec.job_id if parsed is None else parsed
            key = (not S(rec.state).is_terminal, int(rec.native_id))
            if chain_id not in best or key > best[chain_id]:
                best[chain_id] = key
        return {cid: str(native) for cid, (_, native) in best.items()}

    def log_paths(self, job_id: int, native_id: str) -> tuple[Path, Path] | None:
        with self._records() as state:
            rec = self._jobs(state).get(native_id)
        if rec is None:
            return None
        return Path(rec.dir) / "job.out", Path(rec.dir) / "job.err"

    def capacity(self) -> Capacity:
        with self._records() as state:
            jobs = self._tick(state)
        running = [r for r in jobs.values() if r.state == S.RUNNING.value]
        t = self.total
        return Capacity(
            total_cpus=t.total_cpus,
            free_cpus=t.total_cpus - sum(r.cpus for r in running),
            total_mem_mb=t.total_mem_mb,
            free_mem_mb=t.total_mem_mb - sum(r.mem_mb for r in running),
            total_gpus=t.total_gpus,
            free_gpus=t.total_gpus - sum(r.gpus for r in running),
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data
