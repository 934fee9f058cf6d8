"""What every backend takes from the host: the small environment its commands and supervisors
run with, and where a job's working folder is.

One place for both, because the copies the backends once kept drifted apart (one lacked the
``sbin`` folders, one expanded ``~`` into a crash on an unknown user).
"""

from __future__ import annotations

import os
from pathlib import Path

from metascheduler.agent.backends.base import BackendError

#: What a login shell would have; everything else of the agent's environment stays out.
KEPT_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "SHELL")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


def minimal_env() -> dict[str, str]:
    """The environment backend commands run with. Never the agent's own: it may hold the
    provider's key (``MS_PRIVATE_KEY``), and ``sbatch`` exports what it is given into jobs."""
    env = {k: os.environ[k] for k in KEPT_VARIABLES if k in os.environ}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def resolve_workdir(workdir: str | None, job_dir: Path) -> Path:
    """The job's working folder: ``job_dir`` by default, a relative ``workdir`` under it, an
    absolute one as given. A ``~`` is not expanded: a customer has no account here, and
    ``~name`` of an unknown user would fail far from the spec; it stays a plain folder name."""
    if workdir is None:
        return job_dir
    p = Path(workdir)
    if "\x00" in workdir:
        raise BackendError(f"workdir {workdir!r} holds a NUL character: no such folder can exist")
    return p if p.is_absolute() else job_dir / p
