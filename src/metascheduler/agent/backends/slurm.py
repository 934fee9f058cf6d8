"""Run jobs on a Slurm cluster through its command-line tools.

Every command is an argument list (never a shell string), has a timeout, and asks for
machine-readable output. The formats and the parsers that read them sit side by side here, and
``tests/unit/test_slurm_parsers.py`` runs the parsers on outputs recorded from real daemons
(``tests/data/slurm/``; the recording script uses the same formats).

Where a job's status comes from:

1. ``squeue --states=all``: pending and running jobs, and ended ones for ``MinJobAge`` seconds
   (300 by default) after they end. squeue has no exit code, so for ended jobs we go on to 2.
2. ``sacct -c``: the job-completion log (``JobCompType=jobcomp/filetxt``), which keeps every ended
   job with its state and ``ExitCode=N:S``. Works without slurmdbd.
3. Neither knows the job: ``LOST``.

``squeue --json`` is not used: in Slurm 22.05 it ignores ``--jobs`` and returns every job.
"""

from __future__ import annotations

import math
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from metascheduler.agent.backends import sandbox
from metascheduler.agent.backends.base import (
    JOB_NAME_PREFIX,
    Backend,
    BackendError,
    BackendJob,
    BackendJobInfo,
    BackendStatus,
    Capacity,
    parse_job_name,
)
from metascheduler.agent.backends.host import DEFAULT_PATH, minimal_env, resolve_workdir
from metascheduler.agent.backends.sandbox import SandboxPolicy
from metascheduler.agent.backends.script import batch_script
from metascheduler.agent.envelope.staging import Stager

S = BackendStatus

# Slurm job states (squeue %T, sacct State) to ours. Anything else is reported UNKNOWN.
SLURM_STATES: Mapping[str, BackendStatus] = {
    "PENDING": S.QUEUED,
    "CONFIGURING": S.QUEUED,  # nodes allocated but booting: the script has not started
    "REQUEUED": S.QUEUED,
    "REQUEUE_HOLD": S.QUEUED,
    "REQUEUE_FED": S.QUEUED,
    "RESV_DEL_HOLD": S.QUEUED,
    "RUNNING": S.RUNNING,
    "COMPLETING": S.RUNNING,  # the script ended but the final state is not known yet
    "SUSPENDED": S.RUNNING,  # still holds its allocation
    "STOPPED": S.RUNNING,
    "SIGNALING": S.RUNNING,
    "STAGE_OUT": S.RUNNING,
    "RESIZING": S.RUNNING,
    "COMPLETED": S.COMPLETED,
    "FAILED": S.FAILED,
    "OUT_OF_MEMORY": S.FAILED,
    "NODE_FAIL": S.FAILED,
    "BOOT_FAIL": S.FAILED,
    "PREEMPTED": S.FAILED,  # killed by the cluster for another job: not the customer's doing
    "SPECIAL_EXIT": S.FAILED,
    "REVOKED": S.CANCELLED,  # federation: the job runs on a sibling cluster instead
    "CANCELLED": S.CANCELLED,
    "TIMEOUT": S.TIMEOUT,
    "DEADLINE": S.TIMEOUT,  # reached its --deadline: a time limit by another name
}

# Why a job ended badly, in words, when the state alone says it.
_STATE_REASONS = {
    "OUT_OF_MEMORY": "out of memory",
    "NODE_FAIL": "node failure",
    "BOOT_FAIL": "node failed to boot",
    "PREEMPTED": "preempted by the cluster",
    "DEADLINE": "reached its deadline",
    "REVOKED": "revoked (federation)",
}

SQUEUE_FORMAT = "%i|%T|%r|%S|%e|%l|%P|%j"
SACCT_FIELDS = "JobID,State,ExitCode,Start,End,Partition,JobName"
# ":|" is a field's width (none) and suffix: fields separated by "|", not padded.
SINFO_FIELDS = "NodeHost:|,CPUsState:|,Memory:|,AllocMem:|,Gres:|,GresUsed:|,StateLong:"

DEFAULT_TIMEOUT_S = 30.0
_UNSET_TIMES = {"", "N/A", "Unknown", "None", "NONE", "(null)"}


def translate_state(raw: str) -> BackendStatus:
    """Our state for a Slurm state string (``CANCELLED by 0`` and ``RUNNING+`` included)."""
    base = raw.split()[0].rstrip("+") if raw.strip() else ""
    return SLURM_STATES.get(base, S.UNKNOWN)


def parse_exit_code(text: str) -> int | None:
    """``N:S`` (exit status, signal) as one shell-style code: N, or 128+S if killed by signal S."""
    text = text.strip().removeprefix("ExitCode=")
    try:
        status_s, _, signal_s = text.partition(":")
        status, signal = int(status_s), int(signal_s or 0)
    except ValueError:
        return None
    return 128 + signal if signal else status


def parse_time(text: str) -> float | None:
    """A Slurm timestamp (local time, ``2026-11-26T15:52:37``) as Unix seconds."""
    text = text.strip()
    if text in _UNSET_TIMES:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def format_time_limit(seconds: int) -> str:
    """``--time`` value: Slurm counts whole minutes, so round up (a job never gets less time)."""
    return str(max(1, math.ceil(seconds / 60)))


@dataclass(frozen=True)
class QueueRow:
    native_id: str
    raw_state: str
    reason: str
    start: float | None
    end: float | None
    time_limit: str
    partition: str
    name: str


def parse_squeue(text: str) -> list[QueueRow]:
    """Rows of ``squeue --noheader --format=SQUEUE_FORMAT``; the name is last (may hold "|")."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 7)
        if len(parts) != 8:
            raise ValueError(f"unexpected squeue line (format {SQUEUE_FORMAT}): {line!r}")
        jid, state, reason, start, end, limit, partition, name = parts
        rows.append(
            QueueRow(
                jid.strip(),
                state,
                reason,
                parse_time(start),
                parse_time(end),
                limit,
                partition,
                name,
            )
        )
    return rows


@dataclass(frozen=True)
class AcctRow:
    native_id: str
    raw_state: str
    exit_code: int | None
    start: float | None
    end: float | None
    partition: str
    name: str


def parse_sacct(text: str) -> list[AcctRow]:
    """Rows of ``sacct -c --parsable2 --noheader --format=SACCT_FIELDS``."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 6)
        if len(parts) != 7:
            raise ValueError(f"unexpected sacct line (fields {SACCT_FIELDS}): {line!r}")
        jid, state, exit_code, start, end, partition, name = parts
        rows.append(
            AcctRow(
                jid.strip(),
                state,
                parse_exit_code(exit_code),
                parse_time(start),
                parse_time(end),
                partition,
                name,
            )
        )
    return rows


def parse_sinfo_capacity(text: str) -> Capacity:
    """Capacity from ``sinfo --noheader --Node --Format=SINFO_FIELDS``: one line per node and
    partition, a node counted once. Free resources count only nodes that accept work."""
    seen: set[str] = set()
    total_cpus = free_cpus = total_mem = free_mem = total_gpus = free_gpus = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 7:
            raise ValueError(f"unexpected sinfo line (fields {SINFO_FIELDS}): {line!r}")
        node, cpus, mem, alloc_mem, gres, gres_used, state = (p.strip() for p in parts[:7])
        if node in seen:
            continue
        seen.add(node)
        _alloc, idle, _other, total = (int(x) for x in cpus.split("/"))
        mem_mb = int(mem.rstrip("+"))
        gpus = _gres_gpus(gres)
        total_cpus += total
        total_mem += mem_mb
        total_gpus += gpus
        if state.rstrip("*~#!%$@^-+").lower() in _USABLE_NODE_STATES:
            free_cpus += idle
            free_mem += max(0, mem_mb - int(alloc_mem or 0))
            free_gpus += max(0, gpus - _gres_gpus(gres_used))
    return Capacity(total_cpus, free_cpus, total_mem, free_mem, total_gpus, free_gpus)


_USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}


def _gres_gpus(gres: str) -> int:
    """GPU count in a Gres string, e.g. ``gpu:a100:4(S:0-1),shard:8`` -> 4, ``(null)`` -> 0."""
    count = 0
    for item in gres.split(","):
        fields = item.split("(")[0].split(":")
        if fields[0] == "gpu" and len(fields) >= 2 and fields[-1].isdigit():
            count += int(fields[-1])
    return count


class SlurmBackend(Backend):
    """Jobs on one Slurm partition (one partition per provider).

    ``output_dir`` is where job scripts and ``job-<chain id>.out``/``.err`` go: a folder the
    operator can read, visible from the compute nodes. ``slurm_conf`` is passed to every command
    as ``SLURM_CONF`` (None: Slurm's default, ``/etc/slurm/slurm.conf``).
    """

    name = "slurm"

    def __init__(
        self,
        partition: str,
        output_dir: str | Path,
        *,
        slurm_conf: str | Path | None = None,
        command_timeout_s: float = DEFAULT_TIMEOUT_S,
        name_prefix: str = JOB_NAME_PREFIX,
        adopt_lookback_s: int = 7 * 24 * 3600,
        base_env: Mapping[str, str] | None = None,
        sandbox: SandboxPolicy | None = None,
        stager: Stager | None = None,
    ) -> None:
        self.partition = partition
        #: None: jobs run unconfined as the submitting user (tests of the bookkeeping only).
        self.sandbox = sandbox
        self.stager = stager
        self.output_dir = Path(output_dir).resolve()
        self.slurm_conf = str(slurm_conf) if slurm_conf else None
        self.command_timeout_s = command_timeout_s
        self.name_prefix = name_prefix
        self.adopt_lookback_s = adopt_lookback_s
        # Commands run with a small environment, never the agent's own: it may hold keys, and
        # sbatch exports the environment it is given into the job.
        env = dict(base_env) if base_env is not None else minimal_env()
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        self._env = env

    # -- commands ---------------------------------------------------------------------------

    def _run(
        self, args: list[str], *, what: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                args,
                input=stdin,
                capture_output=True,
                text=True,
                env=self._env,
                timeout=self.command_timeout_s,
                check=False,
            )
        except FileNotFoundError:
            raise BackendError(
                f"{what}: {args[0]} not found; install Slurm's client commands "
                "(Debian: apt-get install slurm-client) or fix PATH",
                command=args,
            ) from None
        except subprocess.TimeoutExpired as exc:
            raise BackendError(
                f"{what}: no answer within {self.command_timeout_s:g} s; is slurmctld up "
                "(scontrol ping)?",
                command=args,
                stdout=_text(exc.stdout),
                stderr=_text(exc.stderr),
            ) from None

    def _fail(
        self, what: str, args: list[str], proc: subprocess.CompletedProcess[str], hint: str
    ) -> BackendError:
        return BackendError(
            f"{what} failed: {hint}",
            command=args,
            stdout=proc.stdout,
            stderr=proc.stderr,
            returncode=proc.returncode,
        )

    # -- Backend ----------------------------------------------------------------------------

    def submit(self, job: BackendJob) -> str:
        spec = job.spec
        self.output_dir.mkdir(parents=True, exist_ok=True)
        stem = self.output_dir / f"job-{job.job_id}"
        folder = self._folder(job.job_id)
        workdir = resolve_workdir(spec.workdir, folder / sandbox.WORK_DIR)
        script = batch_script(job, workdir)
        chdir = self.output_dir
        command = sandbox.confine(self.sandbox, self.stager, job, folder, self.output_dir, script)
        if command is not None:
            # The batch script runs as the submitting user (root) inside the allocation, so
            # Slurm accounts for and kills the confined job; it holds nothing of the customer's.
            launch = shlex.join(["env", "-i", f"PATH={DEFAULT_PATH}", *command])
            script = f"#!/bin/bash\n# metascheduler job {job.job_id}, sandboxed\nexec {launch}\n"
            chdir = folder
        res = spec.resources
        args = [
            "sbatch",
            "--parsable",
            f"--job-name={job.name}",
            f"--partition={self.partition}",
            f"--ntasks={res.tasks}",
            f"--cpus-per-task={res.cpus_per_task}",
            f"--mem-per-cpu={res.mem_per_cpu_mb}M",
            f"--time={format_time_limit(job.time_limit_s)}",
            f"--output={stem}.out",
            f"--error={stem}.err",
            f"--chdir={chdir}",
            # A node failure must not make Slurm run the job a second time behind our back.
            "--no-requeue",
            "--export=ALL",
        ]
        if res.gpus:
            args.append(f"--gres=gpu:{res.gpus}")
        # The script is also kept next to the output, so the operator can see what ran.
        Path(f"{stem}.sh").write_text(script)
        proc = self._run(args, what=f"sbatch of job {job.job_id}", stdin=script)
        if proc.returncode != 0:
            raise self._fail(
                f"sbatch of job {job.job_id} on partition {self.partition}",
                args,
                proc,
                "Slurm refused the job; see stderr (refuse the placement if it can never fit)",
            )
        native = proc.stdout.strip().split(";")[0]
        if not native.isdigit():
            raise self._fail(f"sbatch of job {job.job_id}", args, proc, "no job id in its output")
        return native

    def status(self, native_ids: Sequence[str]) -> dict[str, BackendJobInfo]:
        ids = [str(i) for i in dict.fromkeys(native_ids)]
        if not ids:
            return {}
        queue = {row.native_id: row for row in self._squeue(ids)}
        need_final = [
            i for i in ids if i not in queue or translate_state(queue[i].raw_state).is_terminal
        ]
        acct = {row.native_id: row for row in self._sacct(need_final)} if need_final else {}
        out: dict[str, BackendJobInfo] = {}
        for i in ids:
            q, a = queue.get(i), acct.get(i)
            if a is not None:
                out[i] = _status_from_acct(a)
            elif q is not None:
                out[i] = _status_from_queue(q)
            else:
                out[i] = BackendJobInfo(
                    i, S.LOST, reason="not in squeue nor in the job-completion log (sacct -c)"
                )
            name = a.name if a is not None else q.name if q is not None else ""
            chain_id = parse_job_name(name, self.name_prefix)
            if out[i].status is S.FAILED and chain_id is not None:
                why = sandbox.reason_from_report(self._folder(chain_id))
                if why:
                    out[i] = replace(out[i], reason=why)
        return out

    def _folder(self, job_id: int) -> Path:
        """The job's own folder: its script, its sandbox policy and report, and ``work/``."""
        return self.output_dir / f"job-{job_id}"

    def cancel(self, native_id: str) -> None:
        args = ["scancel", str(native_id)]
        proc = self._run(args, what=f"scancel of {native_id}")
        # Cancelling an ended (or purged) job is what we wanted anyway.
        benign = ("already completing or completed", "Invalid job id")
        if proc.returncode != 0 and not any(b in proc.stderr for b in benign):
            raise self._fail(f"scancel of Slurm job {native_id}", args, proc, "see stderr")

    def extend(self, native_id: str, time_limit_s: int) -> None:
        args = [
            "scontrol",
            "update",
            f"JobId={native_id}",
            f"TimeLimit={format_time_limit(time_limit_s)}",
        ]
        proc = self._run(args, what=f"extend of {native_id}")
        if proc.returncode != 0:
            raise self._fail(
                f"time limit update of Slurm job {native_id}",
                args,
                proc,
                "a job that already ended cannot be extended; raising a running job's limit "
                "needs the agent to run as SlurmUser or an operator",
            )

    def adopt(self) -> dict[int, str]:
        found: dict[int, tuple[bool, int]] = {}  # chain id -> (still live, native id)

        def consider(name: str, native: str, live: bool) -> None:
            chain_id = parse_job_name(name, self.name_prefix)
            if chain_id is None or not native.isdigit():
                return
            best = found.get(chain_id)
            # A live job wins over an ended one; among equals, the newest submission.
            if best is None or (live, int(native)) > best:
                found[chain_id] = (live, int(native))

        for q in self._squeue(None):
            consider(q.name, q.native_id, not translate_state(q.raw_state).is_terminal)
        since = datetime.fromtimestamp(time.time() - self.adopt_lookback_s)
        for a in self._sacct(None, since=since):
            if a.partition == self.partition:
                consider(a.name, a.native_id, False)
        return {chain_id: str(native) for chain_id, (_, native) in found.items()}

    def log_paths(self, job_id: int, native_id: str) -> tuple[Path, Path] | None:
        stem = self.output_dir / f"job-{job_id}"
        return stem.with_suffix(".out"), stem.with_suffix(".err")

    def capacity(self) -> Capacity:
        args = [
            "sinfo",
            "--noheader",
            "--Node",
            f"--partition={self.partition}",
            f"--Format={SINFO_FIELDS}",
        ]
        proc = self._run(args, what="sinfo")
        if proc.returncode != 0:
            raise self._fail(f"sinfo of partition {self.partition}", args, proc, "see stderr")
        try:
            return parse_sinfo_capacity(proc.stdout)
        except ValueError as exc:
            raise self._fail("sinfo", args, proc, f"unexpected output ({exc})") from None

    # -- queries ----------------------------------------------------------------------------

    def _squeue(self, ids: Sequence[str] | None) -> list[QueueRow]:
        args = ["squeue", "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}"]
        args += [f"--jobs={','.join(ids)}"] if ids else [f"--partition={self.partition}"]
        proc = self._run(args, what="squeue")
        if proc.returncode != 0:
            # Asked only for ids Slurm has forgotten: an answer, not a failure.
            if "Invalid job id specified" in proc.stderr:
                return []
            raise self._fail("squeue", args, proc, "is slurmctld up (scontrol ping)?")
        try:
            return parse_squeue(proc.stdout)
        except ValueError as exc:
            raise self._fail("squeue", args, proc, f"unexpected output ({exc})") from None

    def _sacct(self, ids: Sequence[str] | None, since: datetime | None = None) -> list[AcctRow]:
        args = ["sacct", "-c", "--parsable2", "--noheader", f"--format={SACCT_FIELDS}"]
        if ids:
            args.append(f"--jobs={','.join(ids)}")
        if since is not None:
            args.append(f"--starttime={since.strftime('%Y-%m-%dT%H:%M:%S')}")
        proc = self._run(args, what="sacct -c")
        if proc.returncode != 0:
            raise self._fail(
                "sacct -c (job-completion log)",
                args,
                proc,
                "the cluster needs JobCompType=jobcomp/filetxt and a readable JobCompLoc",
            )
        try:
            rows = parse_sacct(proc.stdout)
        except ValueError as exc:
            raise self._fail("sacct -c", args, proc, f"unexpected output ({exc})") from None
        # Job ids restart after slurmctld loses its state: the last record is the current one.
        return list({r.native_id: r for r in rows}.values())


def _status_from_queue(q: QueueRow) -> BackendJobInfo:
    state = translate_state(q.raw_state)
    started = q.start if state is not S.QUEUED else None
    return BackendJobInfo(
        q.native_id,
        state,
        exit_code=None,
        started_at=started,
        ended_at=q.end if state.is_terminal else None,
        reason=_reason(q.raw_state, q.reason),
        raw_state=q.raw_state,
    )


def _status_from_acct(a: AcctRow) -> BackendJobInfo:
    state = translate_state(a.raw_state)
    return BackendJobInfo(
        a.native_id,
        state,
        exit_code=a.exit_code if state.is_terminal else None,
        started_at=a.start,
        ended_at=a.end if state.is_terminal else None,
        reason=_reason(a.raw_state, None),
        raw_state=a.raw_state,
    )


def _reason(raw_state: str, squeue_reason: str | None) -> str | None:
    base = raw_state.split()[0].rstrip("+") if raw_state.strip() else raw_state
    if base in _STATE_REASONS:
        return _STATE_REASONS[base]
    if translate_state(raw_state) is S.UNKNOWN:
        return f"unrecognised Slurm state {raw_state!r}"
    if squeue_reason and squeue_reason not in ("None", "(null)"):
        return squeue_reason
    return None


def _text(data: bytes | str | None) -> str | None:
    if data is None or isinstance(data, str):
        return data
    return data.decode("utf-8", "replace")
