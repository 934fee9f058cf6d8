"""Supervisors of local jobs, started by one long-lived process per backend (the "zygote"):
``python -I local_runner.py --zygote``, or ``python -I local_runner.py <job dir> <kill grace s>``
for one job alone.

The zygote reads one request a line on its stdin (``[job dir, kill grace s, C supervisor]`` in
JSON), starts a supervisor for it and answers with the supervisor's pid (or ``!`` and why it
could not). The supervisor is the C program ``supervisor.c`` (built by ``csupervisor.py``),
started with ``posix_spawn`` (a vfork: no copy of this process's memory) where the request names
it; else a fork of this small, already started interpreter, the Python supervisor below, which
does the same at several times the CPU (the fallback where no C compiler is found; a new
interpreter per job cost well over a hundred milliseconds). The supervisors are detached from
the agent (own session, output to the job folder), so that a job keeps running, keeps its time
limit and gets its result recorded while the agent restarts; the zygote ends when the agent
closes its stdin, its supervisors do not.

A supervisor (either):

- runs ``command.json`` (``bash job.sh``, or the sandbox launcher; the C one reads the same
  from ``command.argv`` and ``sandbox.kv``) in a new process group (so a cancel or time-out
  kills the whole tree), output to ``job.out``/``job.err``; for the launcher it plays the
  launcher's part itself (``sandbox_launch.Sandbox``: the job's cgroup,
  the init of its namespaces as its child, the report at the end), from the module already
  imported, with no interpreter nor process of its own;
- writes ``started.json`` (job pid, start time) once the job runs;
- enforces the time limit in ``limit`` (total seconds from the start), re-read every second,
  which is how ``extend`` works;
- on SIGTERM (a cancel) or at the limit, sends SIGTERM to the group, then SIGKILL after the grace;
- writes ``result.json`` (state, exit code, end time) atomically when it is all over.

It sleeps between those looks: the job's end (a pidfd) and a signal (a wake-up pipe) wake it.

Standard library only, run by path: importing our package could pull in the whole agent.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

#: Longest sleep between two looks at the ``cancel`` and ``limit`` files.
POLL_S = 1.0
LAUNCHER = Path(__file__).with_name("sandbox_launch.py")
#: Exit code of a job whose sandbox could not be started (as the launcher's own).
SETUP_FAILED = 126
#: Ignored by this process (Python ignores SIGPIPE and SIGXFSZ; SIGHUP and SIGINT below):
#: set back to their default in a job, which would inherit them ignored.
IGNORED_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ)


def _load_launcher() -> ModuleType:
    """``sandbox_launch.py``, imported by path (``-I`` keeps this folder off ``sys.path``)."""
    spec = importlib.util.spec_from_file_location("ms_sandbox_launch", LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_launcher: ModuleType | None = None


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


def _runs_launcher(command: list[str]) -> bool:
    """Whether the command is ``python -I sandbox_launch.py <policy> <argv...>``."""
    return len(command) >= 4 and command[1] == "-I" and Path(command[2]) == LAUNCHER


def _spawn(command: list[str], job_dir: Path) -> tuple[int, Any]:
    """Starts the job in its own session (pgid == pid), output to its folder, in this
    process's folder: its pid, and its sandbox (None: a plain command) for its end. Raises
    ``OSError`` when its sandbox cannot be made."""
    with open(job_dir / "job.out", "ab") as out, open(job_dir / "job.err", "ab") as err:
        if not _runs_launcher(command):
            pid = os.posix_spawnp(
                command[0],
                command,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                    (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
                ],
                setsid=True,
                setsigdef=IGNORED_SIGNALS,
            )
            return pid, None
        global _launcher
        if _launcher is None:
            _launcher = _load_launcher()
        # The launcher's part is played here: its init is this process's child, one Python
        # process per job fewer (each costs milliseconds of copy-on-write faults).
        sandbox = _launcher.Sandbox(Path(command[3]))
        return sandbox.start(command[4:], (out.fileno(), err.fileno())), sandbox


def supervise(job_dir: Path, grace_s: float) -> int:
    cancelled = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal cancelled
        cancelled = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.chdir(job_dir)

    limit_file = job_dir / "limit"
    limit = _read_limit(limit_file, float("inf"))
    command_file = job_dir / "command.json"
    command = (
        json.loads(command_file.read_text())
        if command_file.exists()
        else ["bash", str(job_dir / "job.sh")]
    )
    try:
        pid, sandbox = _spawn(command, job_dir)
    except OSError as exc:
        with open(job_dir / "job.err", "a") as err:
            err.write(f"sandbox: could not confine the job: {exc}\n")
        result = {
            "state": "FAILED",
            "exit_code": SETUP_FAILED,
            "ended_at": time.time(),
            "reason": f"exit code {SETUP_FAILED}",
        }
        _write_json(job_dir / "result.json", result)
        return 0
    started = time.time()
    _write_json(job_dir / "started.json", {"pid": pid, "started_at": started})
    # Made after the fork, so that the job holds none of them. A signal from here on writes to
    # the pipe and wakes the poll; one before is seen by the first look (``cancelled``).
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    ended = select.poll()
    ended.register(os.pidfd_open(pid), select.POLLIN)
    ended.register(wake_r, select.POLLIN)

    state, reason = "", None
    kill_at: float | None = None
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        now = time.time()
        wait_s = POLL_S
        if not state:
            if cancelled or (job_dir / "cancel").exists():
                state, reason = "CANCELLED", "cancelled"
            else:
                limit = _read_limit(limit_file, limit)
                if now - started >= limit:
                    state, reason = "TIMEOUT", f"time limit of {limit:g} s reached"
                wait_s = min(POLL_S, started + limit - now)
            if state:
                _kill_group(pid, signal.SIGTERM)
                kill_at = now + grace_s
                wait_s = grace_s
        elif kill_at is not None:
            if now >= kill_at:
                _kill_group(pid, signal.SIGKILL)
                kill_at = None
            else:
                wait_s = kill_at - now
        ended.poll(max(1, int(wait_s * 1000) + 1))
        with contextlib.suppress(BlockingIOError):
            os.read(wake_r, 512)
    # The main process is gone; whatever it left running in its group goes with it, as in Slurm.
    _kill_group(pid, signal.SIGKILL)
    if sandbox is not None:
        exit_code = sandbox.finish(status)  # its report written, its cgroup gone
    else:
        code = os.waitstatus_to_exitcode(status)
        exit_code = 128 - code if code < 0 else code
    if not state:
        state = "COMPLETED" if exit_code == 0 else "FAILED"
        reason = None if exit_code == 0 else f"exit code {exit_code}"
    result = {"state": state, "exit_code": exit_code, "ended_at": time.time(), "reason": reason}
    _write_json(job_dir / "result.json", result)
    return 0


def _supervisor(job_dir: Path, grace_s: float) -> None:
    """In a fork of the zygote: detaches, then supervises the job. Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # it waits for its own child
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(job_dir / "runner.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # Over the zygote's pipes to the agent: the agent sees the zygote's end, not ours.
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        code = supervise(job_dir, grace_s)
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            os.write(2, f"supervisor of {job_dir} failed: {exc!r}\n".encode())
    finally:
        os._exit(code)


def zygote() -> int:
    """Forks a supervisor per request line until stdin closes."""
    global _launcher
    _launcher = _load_launcher()  # once, before any fork

    def reap(_signum: int, _frame: object) -> None:
        # Waited for, not left to the kernel (SIG_IGN): a waited-for child's CPU time is
        # added to this process's, where a benchmark reads it.
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass

    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for line in sys.stdin:
        job_dir, grace_s, binary = json.loads(line)
        if binary:
            try:
                answer = str(_spawn_c_supervisor(binary, Path(job_dir), float(grace_s)))
            except OSError as exc:
                answer = f"! could not start {binary}: {exc}"
        else:
            pid = os.fork()
            if pid == 0:
                _supervisor(Path(job_dir), float(grace_s))
            answer = str(pid)
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
    return 0


def _spawn_c_supervisor(binary: str, job_dir: Path, grace_s: float) -> int:
    """The C supervisor for the job, detached as a forked one is (``_supervisor``). Its output
    is /dev/null: it opens ``runner.log`` itself when it has something to say, so that most
    jobs cost no file more."""
    return os.posix_spawn(
        binary,
        [binary, str(job_dir), repr(grace_s)],
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        sys.exit(zygote())
    sys.exit(supervise(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 5.0))
