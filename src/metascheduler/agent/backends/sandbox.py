"""The sandbox every job runs in, on every backend: the provider's policy, the check that this
host can apply it, and the files that hand one job to ``sandbox_launch.py``.

A job folder holds the job's script (``job.sh``), its policy (``sandbox.json``, and
``sandbox.kv`` for the local backend's C supervisor), the launcher's report
(``sandbox-report.json``) and ``work/``, the only place the job may write (owned by the job
user, mode 0700; its ``HOME`` and default working folder). The folder itself stays root's.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metascheduler.agent.backends.base import BackendError, BackendJob
from metascheduler.agent.backends.script import job_env
from metascheduler.agent.envelope.runtime import CONTAINER_WORK, ContainerJob, ContainerRuntime
from metascheduler.agent.envelope.staging import Stager, StagingError

LAUNCHER = Path(__file__).with_name("sandbox_launch.py")
POLICY_FILE = "sandbox.json"
#: The same policy for the local backend's C supervisor: NUL-terminated keys and values.
POLICY_KV_FILE = "sandbox.kv"
REPORT_FILE = "sandbox-report.json"
WORK_DIR = "work"
#: The job's own environment before ``job.sh`` exports the spec's and the ``MS_*`` variables.
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"
_CONTROLLERS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class SandboxPolicy:
    """What a provider sets (the agent's ``[sandbox]`` settings), and the paths to hide."""

    user: str = "msjob"
    #: Run jobs unconfined when this host cannot sandbox them (else they are refused).
    allow_unconfined: bool = False
    network: bool = False
    max_processes: int = 512
    hide: Sequence[Path] = field(default_factory=tuple)

    def problems(self) -> list[str]:
        """Why this host cannot sandbox jobs now, in words; empty when it can."""
        found = []
        if os.geteuid() != 0:
            found.append(
                f"the agent runs as uid {os.geteuid()}, not root: it cannot switch a job to "
                f"user {self.user!r} nor confine it"
            )
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            found.append(
                f"job user {self.user!r} does not exist on this host: create it "
                "(bash scripts/sandbox.sh install) or set sandbox.user"
            )
        else:
            if entry.pw_uid in (0, os.getuid()):
                found.append(f"job user {self.user!r} is root or the agent's own user")
        missing = [c for c in _CONTROLLERS if not _has_controller(c)]
        if missing:
            found.append(f"no cgroup controller for {', '.join(missing)} on this host")
        return found

    def job_user(self) -> tuple[int, int]:
        entry = pwd.getpwnam(self.user)
        return entry.pw_uid, entry.pw_gid


def _has_controller(name: str) -> bool:
    root = Path("/sys/fs/cgroup")
    v2 = root / "cgroup.controllers"
    if v2.exists():
        return name in v2.read_text().split()
    return (root / name).is_dir()


def applies(policy: SandboxPolicy | None, job: BackendJob) -> bool:
    """Whether the job runs sandboxed. Raises ``BackendError`` (the job is refused, the reason in
    words) when this host cannot sandbox it and its operator did not allow unconfined jobs."""
    if policy is None:
        return False
    problems = policy.problems()
    if problems and policy.allow_unconfined:
        return False
    if problems:
        raise BackendError(
            f"job {job.job_id} not run: this provider cannot sandbox it ("
            + "; ".join(problems)
            + "); its operator may allow unconfined jobs with sandbox.allow_unconfined"
        )
    return True


def prepare(
    policy: SandboxPolicy,
    job: BackendJob,
    folder: Path,
    jobs_root: Path,
    script: str,
    runtime: ContainerRuntime | None = None,
) -> list[str]:
    """Writes the job's folder (script, policy, ``work/``) and returns the command that runs it
    confined. ``jobs_root`` holds every job's folder: hidden from the job but for its own. A job
    with a container runs in it under ``runtime``, started as root inside the sandbox and
    running as the job user in the container."""
    uid, gid = policy.job_user()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    work = folder / WORK_DIR
    # Always a fresh one: a folder left by an earlier run of the same job (Slurm names folders
    # by job id) may hold links the job planted, which root's staging would follow.
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    os.chown(work, uid, gid)
    work.chmod(0o700)
    (folder / "job.sh").write_text(script)
    (folder / "job.sh").chmod(0o644)
    writable = [work]
    if job.output_dir is not None:
        # Where the agent collects the job's output files: the job's to write, mounted in.
        job.output_dir.mkdir(parents=True, exist_ok=True)
        os.chown(job.output_dir, uid, gid)
        job.output_dir.chmod(0o700)
        writable.append(job.output_dir)
    spec = job.spec
    data: dict[str, Any] = {
        "name": job.name,
        "uid": uid,
        "gid": gid,
        "cpus": spec.cpus,
        "mem_mb": spec.mem_mb,
        "max_processes": policy.max_processes,
        "network": policy.network,
        "hide": sorted({str(p) for p in (*policy.hide, jobs_root)}),
        "folder": str(folder),
        "work": str(work),
        "writable": [str(p) for p in writable],
        "report": str(folder / REPORT_FILE),
        "env": {"PATH": JOB_PATH, "HOME": str(work), "TMPDIR": "/tmp", "LANG": "C.UTF-8"},
    }
    argv = ["bash", str(folder / "job.sh")]
    if spec.container is not None:
        if runtime is None:
            raise BackendError(f"job {job.job_id} needs a container runtime; none is set up here")
        argv = runtime.run_command(
            runtime.reference(spec.container.digest),
            ContainerJob(
                name=f"{job.name}-{os.getpid()}",
                uid=uid,
                gid=gid,
                cpus=spec.cpus,
                mem_mb=spec.mem_mb,
                max_processes=policy.max_processes,
                network=policy.network,
                work=work,
                outputs=job.output_dir,
                env={**job_env(job), **spec.env},
                argv=_container_argv(job),
            ),
        )
        data["runtime_as_root"] = True
    (folder / POLICY_FILE).write_text(json.dumps(data, indent=1))
    (folder / POLICY_KV_FILE).write_bytes(policy_kv(data))
    return [sys.executable, "-I", str(LAUNCHER), str(folder / POLICY_FILE), *argv]


def policy_kv(data: dict[str, Any]) -> bytes:
    """The policy as ``supervisor.c`` reads it: each key, then its value, NUL-terminated; a
    list repeats its key, the environment as ``NAME=value``, booleans as 0 or 1."""
    items: list[tuple[str, object]] = []
    for key, value in data.items():
        if isinstance(value, list):
            items.extend((key, v) for v in value)
        elif isinstance(value, dict):
            items.extend((key, f"{k}={v}") for k, v in value.items())
        else:
            items.append((key, int(value) if isinstance(value, bool) else value))
    out = bytearray()
    for key, value in items:
        text = str(value)
        if "\0" in text:
            raise BackendError(f"sandbox policy value {text!r} of {key} holds a NUL character")
        out += key.encode() + b"\0" + text.encode() + b"\0"
    return bytes(out)


def job_argv(command: Sequence[str]) -> list[str] | None:
    """The job's own command in a command ``prepare`` returned (None: not one of those)."""
    if len(command) >= 4 and command[1] == "-I" and Path(command[2]) == LAUNCHER:
        return list(command[4:])
    return None


def _container_argv(job: BackendJob) -> list[str]:
    """The payload inside the container, started in its ``workdir`` (under ``/work``)."""
    spec = job.spec
    if isinstance(spec.command, list):
        argv = list(spec.command)
    else:
        argv = ["sh", "-c", spec.command if isinstance(spec.command, str) else spec.script or ""]
    if spec.workdir is None:
        return argv
    wd = spec.workdir if spec.workdir.startswith("/") else f"{CONTAINER_WORK}/{spec.workdir}"
    return ["sh", "-c", 'mkdir -p "$0" && cd "$0" && exec "$@"', wd, *argv]


def confine(
    policy: SandboxPolicy | None,
    stager: Stager | None,
    job: BackendJob,
    folder: Path,
    jobs_root: Path,
    script: str,
) -> list[str] | None:
    """The command that runs the job confined, with its folder written and its inputs and
    image staged; None when it runs unconfined (a host that cannot sandbox, whose operator
    allows that). Raises ``BackendError`` with the reason when the job cannot run here."""
    spec = job.spec
    needs_staging = spec.container is not None or spec.inputs is not None
    if not applies(policy, job) or policy is None:
        if needs_staging:
            raise BackendError(
                f"job {job.job_id} has a container or inputs, which run only in the sandbox, "
                "and this provider cannot sandbox jobs"
            )
        return None
    if needs_staging and stager is None:
        raise BackendError(f"job {job.job_id} has a container or inputs; this backend stages none")
    if stager is not None:
        problems = stager.problems(spec)
        if problems:
            raise BackendError(f"job {job.job_id} not run: " + "; ".join(problems))
    command = prepare(policy, job, folder, jobs_root, script, stager.runtime if stager else None)
    if stager is not None:
        try:
            stager.stage(spec, folder / WORK_DIR, policy.job_user())
        except StagingError as exc:
            raise BackendError(f"job {job.job_id} not staged: {exc}") from None
    return command


def reason_from_report(folder: Path) -> str | None:
    """Why a sandboxed job failed, in words, from the launcher's report (None: no reason)."""
    try:
        report = json.loads((folder / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if report.get("oom_kills"):
        return f"out of memory: killed on using more than the {report['mem_mb']} MB it paid for"
    if report.get("pids_max_hits"):
        return f"reached its process limit ({report['pids_max_hits']} forks refused)"
    return None
