"""Supervisor of one local job: ``python -I local_runner.py <job dir> <kill grace s>``.

The local backend starts one of these per job, detached from the agent, so that a job keeps
running, keeps its time limit and gets its result recorded while the agent restarts. It:

- runs ``command.json`` (``bash job.sh``, or the sandbox launcher) in a new process group (so
  a cancel or time-out kills the whole tree),
  output to ``job.out``/``job.err``;
- writes ``started.json`` (job pid, start time) once the job runs;
- enforces the time limit in ``limit`` (total seconds from the start), re-read every poll, which is
  how ``extend`` works;
- on SIGTERM (a cancel) or at the limit, sends SIGTERM to the group, then SIGKILL after the grace;
- writes ``result.json`` (state, exit code, end time) atomically when it is all over.

Standard library only, run by path: importing our package could pull in the whole agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POLL_S = 0.1


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_limit(path: Path, current: float) -> float:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return current  # a half-written or missing file: keep the last good limit


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def supervise(job_dir: Path, grace_s: float) -> int:
    cancelled = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal cancelled
        cancelled = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    limit_file = job_dir / "limit"
    limit = _read_limit(limit_file, float("inf"))
    command_file = job_dir / "command.json"
    command = (
        json.loads(command_file.read_text())
        if command_file.exists()
        else ["bash", str(job_dir / "job.sh")]
    )
    with open(job_dir / "job.out", "ab") as out, open(job_dir / "job.err", "ab") as err:
        proc = subprocess.Popen(
            command,
            cwd=job_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: pgid == pid
        )
    started = time.time()
    _write_json(job_dir / "started.json", {"pid": proc.pid, "started_at": started})

    state, reason = "", None
    kill_at: float | None = None
    while proc.poll() is None:
        now = time.time()
        if not state:
            if cancelled or (job_dir / "cancel").exists():
                state, reason = "CANCELLED", "cancelled"
            else:
                limit = _read_limit(limit_file, limit)
                if now - started >= limit:
                    state, reason = "TIMEOUT", f"time limit of {limit:g} s reached"
            if state:
                _kill_group(proc.pid, signal.SIGTERM)
                kill_at = now + grace_s
        elif kill_at is not None and now >= kill_at:
            _kill_group(proc.pid, signal.SIGKILL)
            kill_at = None
        time.sleep(POLL_S)
    # The main process is gone; whatever it left running in its group goes with it, as in Slurm.
    _kill_group(proc.pid, signal.SIGKILL)
    code = proc.returncode
    exit_code = 128 - code if code < 0 else code
    if not state:
        state = "COMPLETED" if exit_code == 0 else "FAILED"
        reason = None if exit_code == 0 else f"exit code {exit_code}"
    result = {"state": state, "exit_code": exit_code, "ended_at": time.time(), "reason": reason}
    _write_json(job_dir / "result.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 5.0))
