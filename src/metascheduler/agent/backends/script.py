"""The shell script a job runs as, the same for every backend.

It exports the job's facts (``MS_*``) and the spec's ``env``, then runs the payload: a command
given as a list runs as those exact arguments (quoted here, no shell interpretation), a command
string runs as one shell command line, and a script body runs as written. Bash, not sh: scripts
written for clusters assume it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from metascheduler.agent.backends.base import BackendJob


def job_env(job: BackendJob) -> dict[str, str]:
    """Variables every job sees, whatever the backend."""
    spec = job.spec
    extra = {"MS_OUTPUT_DIR": str(job.output_dir)} if job.output_dir is not None else {}
    return {
        **extra,
        # Python jobs write their lines as they go, not in 8 KiB blocks: their log streams.
        "PYTHONUNBUFFERED": "1",
        "MS_JOB_ID": str(job.job_id),
        "MS_JOB_NAME": spec.name,
        "MS_TASKS": str(spec.resources.tasks),
        "MS_CPUS_PER_TASK": str(spec.resources.cpus_per_task),
        "MS_CPUS": str(spec.cpus),
        "MS_MEM_MB": str(spec.mem_mb),
        "MS_GPUS": str(spec.gpus),
        "MS_TIME_LIMIT_S": str(job.time_limit_s),
    }


def batch_script(job: BackendJob, workdir: Path | None = None) -> str:
    spec = job.spec
    lines = ["#!/bin/bash", f"# metascheduler job {job.job_id} ({job.name})"]
    env = {**job_env(job), **spec.env}
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    if job.output_dir is not None:
        lines.append(f"mkdir -p {shlex.quote(str(job.output_dir))}")
    if workdir is not None:
        # Made by the job itself (as the job user when sandboxed): a folder the job cannot make
        # fails the job, never the agent. Tested first: most jobs run in the folder the backend
        # made, and a ``mkdir`` process is a millisecond of a short job's CPU.
        w = shlex.quote(str(workdir))
        lines.append(f"{{ [ -d {w} ] || mkdir -p -- {w}; }} && cd -- {w} || exit 125")
    if isinstance(spec.command, list):
        lines.append("exec " + shlex.join(spec.command))
    elif isinstance(spec.command, str):
        lines.append(spec.command)
    else:
        lines.append(spec.script or "")
    return "\n".join(lines) + "\n"
