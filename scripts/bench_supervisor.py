#!/usr/bin/env python3
"""CPU per job of the local backend's job supervisors: start and end of a no-op job (``true``),
sandboxed (the default) or not, under the C supervisor and the Python one.

Runs `--jobs` jobs through a real ``LocalBackend`` (as root, with the default sandbox policy),
`--batch` submitted at once, and reads from /proc the CPU time of its zygote and of everything
the zygote reaped: every job's supervisor, sandbox init and job. The last line is one JSON
object: per supervisor, ``cpu_ms_per_job`` (user + system) and its ``user_ms``/``system_ms``
split, and ``backend_cpu_ms_per_job`` (the backend's own calls, in this process).
Usage: .venv/bin/python scripts/bench_supervisor.py [--jobs 200] [--batch 20] [--plain]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from metascheduler.agent.backends import BackendJob
from metascheduler.agent.backends.local import LocalBackend, Supervisor
from metascheduler.agent.backends.sandbox import SandboxPolicy
from metascheduler.spec import validate_spec

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    """(user, system) clock ticks of a process and of the children it reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[13]), int(fields[12]) + int(fields[14])


def run(supervisor: Supervisor, jobs: int, batch: int, sandboxed: bool) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="ms-bench-sup-", dir="/tmp"))
    base.chmod(0o755)
    policy = SandboxPolicy() if sandboxed else None
    backend = LocalBackend(
        base / "local", cpus=batch, mem_mb=batch * 100, sandbox=policy, supervisor=supervisor
    )
    spec = validate_spec({"name": "noop", "command": ["true"], "resources": {"mem_per_cpu_mb": 64}})
    try:
        # One job first: the zygote started (and the C supervisor found) before the count.
        first = backend.submit(BackendJob(0, spec, 60, name="bench-0"))
        while not backend.status([first])[first].status.is_terminal:
            time.sleep(0.01)
        zygote = backend._zygote
        assert zygote is not None
        time.sleep(0.2)
        user0, sys0 = cpu_ticks(zygote.pid)
        own0 = time.process_time()
        started = time.perf_counter()
        for at in range(1, jobs + 1, batch):
            ids = range(at, min(at + batch, jobs + 1))
            natives = backend.submit_many([BackendJob(i, spec, 60, name=f"bench-{i}") for i in ids])
            pending = [n for n in natives if isinstance(n, str)]
            assert len(pending) == len(natives), natives
            while pending:
                states = backend.status(pending)
                pending = [n for n in pending if not states[n].status.is_terminal]
                time.sleep(0.005)
        wall = time.perf_counter() - started
        own = time.process_time() - own0
        time.sleep(0.3)  # the last supervisors reaped by the zygote
        user1, sys1 = cpu_ticks(zygote.pid)
    finally:
        backend.close()
        shutil.rmtree(base, ignore_errors=True)
    per_job = 1000 / CLOCK_TICKS / jobs
    return {
        "cpu_ms_per_job": round((user1 - user0 + sys1 - sys0) * per_job, 2),
        "user_ms": round((user1 - user0) * per_job, 2),
        "system_ms": round((sys1 - sys0) * per_job, 2),
        "backend_cpu_ms_per_job": round(own * 1000 / jobs, 2),
        "jobs_per_s": round(jobs / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--plain", action="store_true", help="unsandboxed jobs")
    args = parser.parse_args()
    out: dict[str, object] = {"jobs": args.jobs, "sandboxed": not args.plain}
    for kind in ("c", "python"):
        figures = run(kind, args.jobs, args.batch, not args.plain)
        print(f"# {kind}: {figures}", flush=True)
        out[kind] = figures
    print(json.dumps(out))


if __name__ == "__main__":
    main()
