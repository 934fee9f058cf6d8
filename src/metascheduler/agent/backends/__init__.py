"""Execution backends of the provider agent: ``slurm`` (a Slurm partition) and ``local``
(processes on this machine). ``make_backend(kind, **options)`` builds one from settings."""

from __future__ import annotations

from typing import Any

from metascheduler.agent.backends.base import (
    Backend,
    BackendError,
    BackendJob,
    BackendJobInfo,
    BackendStatus,
    Capacity,
    job_name,
    parse_job_name,
)

KINDS = ("slurm", "local")


def make_backend(kind: str, **options: Any) -> Backend:
    """A backend by name. Options are the backend's constructor arguments:

    - ``slurm``: ``partition``, ``output_dir``, optional ``slurm_conf``, ``command_timeout_s``...
    - ``local``: ``workdir``, optional ``cpus``, ``mem_mb``, ``gpus``, ``kill_grace_s``...
    """
    try:
        if kind == "slurm":
            from metascheduler.agent.backends.slurm import SlurmBackend

            return SlurmBackend(**options)
        if kind == "local":
            from metascheduler.agent.backends.local import LocalBackend

            return LocalBackend(**options)
    except TypeError as exc:
        raise BackendError(f"bad options for the {kind} backend: {exc}") from None
    raise BackendError(f"unknown backend kind {kind!r}: choose one of {', '.join(KINDS)}")


__all__ = [
    "KINDS",
    "Backend",
    "BackendError",
    "BackendJob",
    "BackendJobInfo",
    "BackendStatus",
    "Capacity",
    "job_name",
    "make_backend",
    "parse_job_name",
]
