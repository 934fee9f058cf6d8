"""Run jobs as processes on this machine, within a declared capacity.

For small providers and the devnet. Each job gets a folder ``<workdir>/jobs/<native id>-<name>/``
with its script, ``job.out``, ``job.err`` and, when it ends, ``result.json``. A small supervisor
process per job runs it in its own process group (and sandbox), enforces its time limit and
records its exit code, independently of the agent: jobs survive an agent restart, and jobs that
end while the agent is down still have their result on disk. The supervisor is a small C program
(``supervisor.c``, built by ``csupervisor.py``), started with ``posix_spawn`` by one process the
backend starts once (the zygote, ``local_runner.py``); where no C compiler is found, the Python
supervisor forked from the zygote does the same work at several times the CPU.

Scheduling happens whenever the backend is called (the agent polls ``status`` every few seconds):
jobs that do not fit wait ``QUEUED`` in submission order, and a later, smaller job that fits starts
first (backfill). The backend's own records live in ``<workdir>/state.json`` (jobs queued or
running) and ``<workdir>/ended.jsonl`` (one line per ended job, appended once, kept for
``retention_s``); one agent per workdir. The records stay in memory between calls: a file is
read again only when another process wrote it, and written only when a record changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from metascheduler.agent.backends import csupervisor, sandbox
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
#: (Enum member values looked up once: thousands of records are scanned at every call.)
RUNNING, QUEUED = S.RUNNING.value, S.QUEUED.value
RUNNER = Path(__file__).with_name("local_runner.py")
log = logging.getLogger("metascheduler.agent.backends.local")

STATE_VERSION = 1
#: In a job's folder: claimed before its supervisor starts, then naming it ([pid, start ticks]).
LAUNCHED = "launched"
#: In a job's folder: what the C supervisor runs ("plain" or "sandbox", then the job's argv).
COMMAND_ARGV = "command.argv"
_LIVE = (RUNNING, QUEUED)
#: Longest time between two looks for records past ``retention_s``.
PURGE_EVERY_S = 3600.0
_FileKey = tuple[int, int, int] | None
#: Which program supervises jobs (see ``LocalBackend``).
Supervisor = Literal["auto", "c", "python"]


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


@dataclass
class _Records:
    """The state file's content: every job's record, by native id."""

    version: int
    next_id: int
    jobs: dict[str, _Record]


def _file_key(path: Path) -> _FileKey:
    """What tells one version of a file from another without reading it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


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
        supervisor: Supervisor = "auto",
    ) -> None:
        """``supervisor``: which supervises jobs; "auto" the C one where it can be built here
        (else Python, saying so once), "c" that one or an error, "python" the fallback."""
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
        self._zygote: subprocess.Popen[bytes] | None = None
        if supervisor not in ("auto", "c", "python"):
            raise BackendError(f"supervisor {supervisor!r}: choose auto, c or python")
        self.supervisor = supervisor
        #: The C supervisor's path once looked for ("" where it is not used).
        self._binary: str | None = None if supervisor != "python" else ""
        #: A pidfd per supervisor this backend started and has not seen end: readable once
        #: it ends (``news``).
        self._watched: dict[str, int] = {}
        (self.workdir / "jobs").mkdir(parents=True, exist_ok=True)
        self._state_file = self.workdir / "state.json"
        self._ended_file = self.workdir / "ended.jsonl"
        self._lock_file = self.workdir / "state.lock"
        # The files as last read or written here (see ``_load`` and ``_save``).
        self._cache: _Records | None = None
        self._cache_key: tuple[_FileKey, _FileKey] = (None, None)
        self._fragments: dict[str, tuple[tuple[Any, ...], str]] = {}
        self._written = ""
        #: Native ids of the records in ``ended.jsonl``.
        self._ended_saved: set[str] = set()
        self._purged_at = 0.0

    # -- persistence ------------------------------------------------------------------------

    @contextmanager
    def _records(self) -> Iterator[_Records]:
        """Every job's record, locked for one read-modify-write; saved when the block ends."""
        with open(self._lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                records = self._load()
                yield records
                self._save(records)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _file_key(self) -> tuple[_FileKey, _FileKey]:
        return _file_key(self._state_file), _file_key(self._ended_file)

    def _load(self) -> _Records:
        """The records in memory, read again only when a file is not as last written here."""
        key = self._file_key()
        if self._cache is not None and key == self._cache_key:
            return self._cache
        self._cache_key, self._fragments, self._ended_saved = key, {}, set()
        jobs: dict[str, _Record] = {}
        state: dict[str, Any] = {"version": STATE_VERSION, "next_id": 1}
        if key[0] is not None:
            try:
                state = json.loads(self._state_file.read_text())
            except ValueError as exc:
                raise BackendError(
                    f"local backend state {self._state_file} is not valid JSON ({exc}); "
                    "move it aside to start afresh (jobs it tracked will be reported LOST)"
                ) from None
            jobs = {k: _Record(**v) for k, v in state["jobs"].items()}
        for fields in _ended_records(self._ended_file):
            try:
                rec = _Record(**fields)
            except TypeError:
                continue  # not a record of this version
            jobs[rec.native_id] = rec  # an end is final: over the live record
            self._ended_saved.add(rec.native_id)
        self._cache = _Records(state["version"], state["next_id"], jobs)
        return self._cache

    def _save(self, records: _Records) -> None:
        """Appends the records of jobs that ended to ``ended.jsonl``, then writes the live ones
        to ``state.json`` when one changed (each record's JSON encoded again only then). A busy
        provider keeps thousands of ended records (``retention_s``): none is read, encoded or
        written again at each call, only once when its job ends."""
        jobs = records.jobs
        live = jobs.keys() - self._ended_saved
        ended = [jobs[nid] for nid in live if jobs[nid].state not in _LIVE]
        if ended:
            lines = "".join(json.dumps(vars(rec), sort_keys=True) + "\n" for rec in ended)
            with open(self._ended_file, "ab+") as out:
                end = out.seek(0, os.SEEK_END)
                if end:
                    out.seek(end - 1)
                    if out.read(1) != b"\n":  # a crash cut the last line: start a new one
                        lines = "\n" + lines
                out.write(lines.encode())
            self._ended_saved.update(rec.native_id for rec in ended)
            live.difference_update(rec.native_id for rec in ended)
        fragments: dict[str, tuple[tuple[Any, ...], str]] = {}
        parts = []
        for nid in sorted(live, key=int):
            rec = jobs[nid]
            values = tuple(vars(rec).values())
            known = self._fragments.get(nid)
            if known is None or known[0] != values:
                known = (values, f"{json.dumps(nid)}: {json.dumps(vars(rec), sort_keys=True)}")
            fragments[nid] = known
            parts.append(known[1])
        self._fragments = fragments
        # One line, no indent: the file is read and written at every call.
        text = (
            '{"jobs": {' + ", ".join(parts) + "}, "
            f'"next_id": {records.next_id}, "version": {records.version}}}'
        )
        if text == self._written and self._cache_key[0] == _file_key(self._state_file):
            self._cache_key = self._file_key()
            return
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self._state_file)
        self._written, self._cache_key = text, self._file_key()

    def _purge(self, records: _Records, now: float) -> None:
        """Forgets the jobs that ended more than ``retention_s`` ago (``ended.jsonl`` written
        again without them): at most once per ``PURGE_EVERY_S``, not at every call."""
        if now - self._purged_at < min(PURGE_EVERY_S, self.retention_s):
            return
        self._purged_at = now
        jobs = records.jobs
        old = [
            nid
            for nid in self._ended_saved
            if (ended_at := jobs[nid].ended_at) is not None and now - ended_at > self.retention_s
        ]
        if not old:
            return
        for nid in old:
            del jobs[nid]
        self._ended_saved.difference_update(old)
        tmp = self._ended_file.with_suffix(".tmp")
        tmp.write_text(
            "".join(json.dumps(vars(jobs[nid]), sort_keys=True) + "\n" for nid in self._ended_saved)
        )
        os.replace(tmp, self._ended_file)
        self._cache_key = self._file_key()

    # -- scheduling -------------------------------------------------------------------------

    def _tick(self, records: _Records) -> dict[str, _Record]:
        """Bring records up to date: reap, collect results, start what fits, forget old jobs."""
        for nid in self._ended_supervisors():
            os.close(self._watched.pop(nid))
        jobs = records.jobs
        used_cpus = used_mem = used_gpus = 0
        queued = []
        for nid in jobs.keys() - self._ended_saved:
            rec = jobs[nid]
            if rec.state == RUNNING:
                self._refresh_running(rec)
                if rec.state == RUNNING:
                    used_cpus, used_mem, used_gpus = (
                        used_cpus + rec.cpus,
                        used_mem + rec.mem_mb,
                        used_gpus + rec.gpus,
                    )
            elif rec.state == QUEUED:
                queued.append(rec)
        queued.sort(key=lambda r: (r.submitted_at, int(r.native_id)))
        written_ahead = False
        for rec in queued:
            fits = (
                used_cpus + rec.cpus <= self.total.total_cpus
                and used_mem + rec.mem_mb <= self.total.total_mem_mb
                and used_gpus + rec.gpus <= self.total.total_gpus
            )
            if fits:
                if not written_ahead:
                    # Before the first start: an agent killed while it starts them finds each
                    # job's record (and its native id taken) at restart, never starting it a
                    # second time under the same id (see ``_start``).
                    self._save(records)
                    written_ahead = True
                self._start(rec)
                used_cpus, used_mem, used_gpus = (
                    used_cpus + rec.cpus,
                    used_mem + rec.mem_mb,
                    used_gpus + rec.gpus,
                )
        self._purge(records, time.time())
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
        """Starts the job's supervisor, once: ``launched`` is claimed first (and then names the
        supervisor), so a record found QUEUED after a crash whose job was already started is
        marked running, not started again."""
        job_dir = Path(rec.dir)
        marker = job_dir / LAUNCHED
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            self._resume_launched(rec, marker)
            return
        (job_dir / "limit").write_text(str(rec.time_limit_s))
        try:
            pid = self._fork_supervisor(job_dir)
        except OSError as exc:
            os.close(fd)
            rec.state, rec.ended_at = S.FAILED.value, time.time()
            rec.reason = f"could not start its supervisor: {exc}"
            return
        try:
            os.write(fd, json.dumps([pid, _proc_start_ticks(pid)]).encode())
        finally:
            os.close(fd)
        rec.state = S.RUNNING.value
        rec.runner_pid = pid
        rec.runner_start_ticks = _proc_start_ticks(pid)
        rec.started_at = time.time()
        # (One that ended already has its result on disk: the next call reads it.)
        with contextlib.suppress(ProcessLookupError):
            self._watched[rec.native_id] = os.pidfd_open(pid)

    def _resume_launched(self, rec: _Record, marker: Path) -> None:
        """A job an earlier process of this backend started, then died before recording it:
        it runs (or ran) under the supervisor ``launched`` names; the next call reads how it
        ended. Without a name (a crash between the claim and the fork's answer), a job with no
        result is reported LOST."""
        try:
            pid, ticks = json.loads(marker.read_text())
        except (OSError, ValueError):
            pid, ticks = None, None
        started = _read_json(Path(rec.dir) / "started.json")
        rec.state = S.RUNNING.value
        rec.runner_pid, rec.runner_start_ticks = pid, ticks
        rec.started_at = started["started_at"] if started else time.time()
        log.warning(
            "backend job %s (chain job %d) was started before a restart that lost its record; "
            "following it, not starting it again",
            rec.native_id,
            rec.job_id,
        )

    def supervisor_binary(self) -> str:
        """The C supervisor's path, built on first use; "" where the Python one is used."""
        if self._binary is None:
            try:
                self._binary = str(csupervisor.locate(self.workdir))
            except csupervisor.BuildError as exc:
                if self.supervisor == "c":
                    raise BackendError(f"local backend: no C job supervisor: {exc}") from None
                log.warning(csupervisor.fallback_notice(exc))
                self._binary = ""
        return self._binary

    def _fork_supervisor(self, job_dir: Path) -> int:
        """A supervisor for the job, started by the zygote (started again if it died): the C
        one for a job prepared for it, else a fork of the zygote."""
        binary = self.supervisor_binary() if (job_dir / COMMAND_ARGV).exists() else ""
        request = json.dumps([str(job_dir), self.kill_grace_s, binary]).encode() + b"\n"
        for _ in range(2):
            zygote = self._zygote_process()
            assert zygote.stdin is not None and zygote.stdout is not None
            try:
                zygote.stdin.write(request)
                zygote.stdin.flush()
                answer = zygote.stdout.readline()
            except OSError:
                answer = b""
            if answer.strip().isdigit():
                return int(answer)
            if answer.startswith(b"!"):  # the zygote lives; the supervisor could not start
                raise OSError(answer[1:].decode(errors="replace").strip())
            self.close()
        raise OSError(f"{RUNNER.name} --zygote ended; see {self.workdir / 'zygote.log'}")

    def _zygote_process(self) -> subprocess.Popen[bytes]:
        if self._zygote is None or self._zygote.poll() is not None:
            with open(self.workdir / "zygote.log", "ab") as log:
                self._zygote = subprocess.Popen(
                    [sys.executable, "-I", str(RUNNER), "--zygote"],
                    cwd=self.workdir,
                    env=self._env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    # Not in the agent's group: a ^C to the agent spares it and the jobs.
                    start_new_session=True,
                )
        return self._zygote

    def close(self) -> None:
        """Ends the zygote (it ends by itself when this process does); jobs keep running."""
        zygote, self._zygote = self._zygote, None
        if zygote is None:
            return
        for pipe in (zygote.stdin, zygote.stdout):
            if pipe is not None:
                pipe.close()
        try:
            zygote.wait(timeout=5)
        except subprocess.TimeoutExpired:
            zygote.kill()
            zygote.wait()

    def _ended_supervisors(self) -> list[str]:
        if not self._watched:
            return []
        by_fd = {fd: nid for nid, fd in self._watched.items()}
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        return [by_fd[fd] for fd, _ in poller.poll(0)]

    # -- Backend ----------------------------------------------------------------------------

    def news(self) -> int:
        # A supervisor ends when its job ends (results on disk): one poll over their pidfds.
        return len(self._ended_supervisors())

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
            records = state.jobs
            for job in jobs:
                refusal = self._never_fits(job)
                if refusal is not None:
                    out.append(refusal)
                    continue
                native = str(state.next_id)
                state.next_id += 1
                try:
                    records[native] = self._prepare(job, native)
                except BackendError as exc:  # its sandbox cannot take it
                    out.append(exc)
                    continue
                except Exception as exc:
                    out.append(unforeseen(job, exc))
                    continue
                out.append(native)
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
            argv = ["plain", *command]
        else:
            argv = ["sandbox", *(sandbox.job_argv(command) or [])]
        (job_dir / "command.json").write_text(json.dumps(command))
        if self.supervisor_binary():
            # Each string NUL-terminated: C reads it with no parser. The spec's strings are
            # checked for NULs; one here would split an argument of a command run as root.
            if any("\0" in a for a in argv):
                raise BackendError(f"job {job.job_id}: its command holds a NUL character")
            (job_dir / COMMAND_ARGV).write_bytes(b"".join(a.encode() + b"\0" for a in argv))
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
        out = {}
        with self._records() as state:
            jobs = self._tick(state)
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
            if rec.state == QUEUED:
                rec.state, rec.ended_at, rec.reason = S.CANCELLED.value, time.time(), "cancelled"
            else:
                # The supervisor kills the job's group and records CANCELLED. It polls the file
                # anyway; the signal only makes it quicker, and is sent once started.json shows
                # its handler is in place (before that, SIGTERM would kill it and lose the job).
                (Path(rec.dir) / "cancel").touch()
                started = (Path(rec.dir) / "started.json").exists()
                if started and self._runner_alive(rec) and rec.runner_pid is not None:
                    os.kill(rec.runner_pid, signal.SIGTERM)

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

    def adopt(self) -> dict[int, str]:
        with self._records() as state:
            records = list(self._tick(state).values())
        best: dict[int, tuple[bool, int]] = {}
        for rec in records:
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
            rec = state.jobs.get(native_id)
        if rec is None:
            return None
        return Path(rec.dir) / "job.out", Path(rec.dir) / "job.err"

    def capacity(self) -> Capacity:
        with self._records() as state:
            running = [r for r in self._tick(state).values() if r.state == RUNNING]
        t = self.total
        return Capacity(
            total_cpus=t.total_cpus,
            free_cpus=t.total_cpus - sum(r.cpus for r in running),
            total_mem_mb=t.total_mem_mb,
            free_mem_mb=t.total_mem_mb - sum(r.mem_mb for r in running),
            total_gpus=t.total_gpus,
            free_gpus=t.total_gpus - sum(r.gpus for r in running),
        )


def read_records(workdir: Path) -> dict[str, dict[str, Any]]:
    """Every job record a local backend working in `workdir` keeps, by native id, read without
    its lock (for an auditor or a test beside a running agent): the live ones of ``state.json``,
    then the ended ones of ``ended.jsonl`` over them (an end is final)."""
    workdir = Path(workdir)
    records: dict[str, dict[str, Any]] = {}
    state = _read_json(workdir / "state.json")
    if state is not None:
        records.update(state.get("jobs", {}))
    for rec in _ended_records(workdir / "ended.jsonl"):
        records[str(rec["native_id"])] = rec
    return records


def _ended_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of ``ended.jsonl``, oldest first; a line a crash cut short is skipped (its
    job is still in ``state.json``)."""
    if not path.exists():
        return
    with open(path) as ended:
        for line in ended:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data
