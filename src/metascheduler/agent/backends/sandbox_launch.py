"""Runs one job in its sandbox: ``python3 -I sandbox_launch.py <policy.json> <command...>``.

Run as root by a Slurm batch script inside the job's allocation, or (``Sandbox``, in the Python
job supervisor itself: no new interpreter, no process of its own) by the local backend on a host
with no C compiler. A local backend otherwise runs ``supervisor.c``, which takes these steps in
the same order in C (a change here is a change there). It:

- makes a cgroup under the one it runs in (so Slurm's own limits still apply above it) and sets
  the memory, CPU and process-count limits the job paid for; every process of the job is in it;
- unshares the mount, PID, IPC and UTS namespaces (and the network one unless the provider
  allows the network): the job sees only its own processes, a fresh ``/proc``, private ``/tmp``,
  ``/var/tmp`` and ``/dev/shm``, empty folders over the agent's files and over every job folder
  but its own (which it gets back, read-only but for ``work/``);
- drops to the job user (no supplementary groups, ``no_new_privs``: no setuid way back to root)
  with only the given environment, and runs the command;
- stays PID 1 of the namespace while the job's main process lives: when that ends, the kernel
  kills whatever the job left behind;
- writes ``report`` (out-of-memory kills, process-limit hits) and exits with the job's code
  (128 + N when killed by signal N).

Standard library only, run by path: a compute node needs Python 3 but not our package. Linux
only; cgroup v1 (as here) or v2.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Stands, in a container runtime's command, for the job's memory cgroup (see runtime.py).
JOB_CGROUP = "@JOB_CGROUP@"
#: Longest wait for killed processes to leave the job's cgroup before it is removed.
DESTROY_WAIT_S = 10.0
#: Exit code when the sandbox itself could not be set up (as the shell's "cannot execute").
SETUP_FAILED = 126

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


# ------------------------------------------------------------------------------------ cgroups


class Cgroups:
    """The job's own cgroup, nested under the launcher's, in each controller it needs."""

    def __init__(self, name: str) -> None:
        self.v2 = (CGROUP_ROOT / "cgroup.controllers").exists()
        self.dirs: dict[str, Path] = {}
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            rel = path.lstrip("/")
            if self.v2 and controllers == "":
                self.dirs = dict.fromkeys(("memory", "pids", "cpu"), CGROUP_ROOT / rel / name)
            for c in controllers.split(","):
                if not self.v2 and c in ("memory", "pids", "cpu"):
                    self.dirs[c] = CGROUP_ROOT / c / rel / name

    def create(self, mem_mb: int, cpus: int, max_processes: int) -> None:
        missing = {"memory", "pids", "cpu"} - self.dirs.keys()
        if missing:
            raise OSError(f"no cgroup controller for {', '.join(sorted(missing))}")
        for d in set(self.dirs.values()):
            d.mkdir(exist_ok=True)
        mem = mem_mb << 20
        if self.v2:
            d = self.dirs["memory"]
            (d / "memory.max").write_text(str(mem))
            with contextlib.suppress(OSError):
                (d / "memory.swap.max").write_text("0")
            (d / "pids.max").write_text(str(max_processes))
            (d / "cpu.max").write_text(f"{cpus * 100_000} 100000")
            return
        m = self.dirs["memory"]
        (m / "memory.limit_in_bytes").write_text(str(mem))
        with contextlib.suppress(OSError):  # only where swap is accounted
            (m / "memory.memsw.limit_in_bytes").write_text(str(mem))
        (self.dirs["pids"] / "pids.max").write_text(str(max_processes))
        c = self.dirs["cpu"]
        (c / "cpu.cfs_period_us").write_text("100000")
        (c / "cpu.cfs_quota_us").write_text(str(cpus * 100_000))

    def memory_path(self) -> str:
        """The job's memory cgroup, as a path from its hierarchy's root."""
        root = CGROUP_ROOT if self.v2 else CGROUP_ROOT / "memory"
        return "/" + str(self.dirs["memory"].relative_to(root))

    def enter(self) -> None:
        """Moves the calling process in; its children follow."""
        for d in set(self.dirs.values()):
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def report(self) -> dict[str, int]:
        def counter(path: Path, key: str) -> int:
            with contextlib.suppress(OSError):
                for line in path.read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k == key:
                        return int(v)
            return 0

        m, p = self.dirs["memory"], self.dirs["pids"]
        oom = m / ("memory.events" if self.v2 else "memory.oom_control")
        return {
            "oom_kills": counter(oom, "oom_kill"),
            "pids_max_hits": counter(p / "pids.events", "max"),
        }

    def destroy(self) -> None:
        """Kills what is left in it, waits for it to empty, and removes it."""
        deadline = time.monotonic() + DESTROY_WAIT_S
        for d in set(self.dirs.values()):
            while time.monotonic() < deadline:
                try:
                    pids = (d / "cgroup.procs").read_text().split()
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                time.sleep(0.05)  # a killed process leaves its cgroup once it has exited
        # A container runtime given the memory cgroup as parent made that path in every
        # hierarchy (v1), and a ``conmon`` cgroup under it: those go too.
        extra = set(CGROUP_ROOT.glob("*" + self.memory_path())) if not self.v2 else set()
        for d in set(self.dirs.values()) | extra:
            for leaf in (d / "conmon", d):
                with contextlib.suppress(OSError):
                    leaf.rmdir()


# ------------------------------------------------------------------------ inside the namespace


def _private_filesystem(policy: dict[str, Any]) -> None:
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    # Handles on the job's own folder and on the other folders it may write (its output folder,
    # which the agent keeps with its own files), taken in this namespace before anything is
    # hidden: they are mounted back from them.
    folder, work = policy["folder"], policy["work"]
    outside = [p for p in policy.get("writable", []) if not p.startswith(folder + "/")]
    handles = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in [folder, *outside]}
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for tmp in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(tmp):
            _mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    # Shortest first: a path inside one already hidden is gone already.
    for path in sorted(policy["hide"], key=len):
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64k")
        elif os.path.exists(path):
            _mount("/dev/null", path, None, MS_BIND)
    for path, fd in handles.items():
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    _mount(work, work, None, MS_BIND)
    _mount("none", folder, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _become_job_user(policy: dict[str, Any]) -> None:
    uid, gid = policy["uid"], policy["gid"]
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.umask(0o077)
    os.chdir(policy["work"])


def _init(policy: dict[str, Any], groups: Cgroups, argv: list[str]) -> int:
    """PID 1 of the job's namespace: sets it up, runs the job, reaps, passes signals on."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        # In the job's cgroup from here on; the launcher stays out, so that it outlives an
        # out-of-memory kill to report it.
        groups.enter()
        flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS
        if not policy["network"]:
            flags |= CLONE_NEWNET
        _check(_libc.unshare(flags), "unshare")
        _private_filesystem(policy)
        if not policy["network"]:
            _loopback_up()
    except OSError as exc:
        print(f"sandbox: could not confine the job: {exc}", file=sys.stderr)
        return SETUP_FAILED
    job = os.fork()
    if job == 0:
        try:
            # What the launcher ignores (Python: SIGPIPE, SIGXFSZ; a supervisor: SIGHUP,
            # SIGINT) would stay ignored in the job.
            for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            # The job, not its init, is the first the kernel kills when memory runs out.
            Path("/proc/self/oom_score_adj").write_text("500")
            if policy.get("runtime_as_root"):
                # A container runtime: it starts the container as the job user itself.
                os.chdir(policy["work"])
                argv = [a.replace(JOB_CGROUP, groups.memory_path()) for a in argv]
            else:
                _become_job_user(policy)
            os.execvpe(argv[0], argv, policy["env"])
        except OSError as exc:
            print(f"sandbox: could not start the job: {exc}", file=sys.stderr)
        os._exit(SETUP_FAILED)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signum)  # every process of the namespace but its init

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == job:
            return _code(status)


def _code(status: int) -> int:
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


# --------------------------------------------------------------------------------- the launcher


class Sandbox:
    """One job's sandbox seen from outside it: its cgroup and the init of its namespaces
    (``start``), then its report and the cgroup's removal once the init ended (``finish``).

    ``launch`` runs one in this process (the Slurm batch script's way); the local backend's job
    supervisor runs one itself, so that a local job costs no launcher process of its own."""

    def __init__(self, policy_path: Path) -> None:
        self.policy: dict[str, Any] = json.loads(policy_path.read_text())
        self.groups = Cgroups(f"ms-{self.policy['name']}-{os.getpid()}")

    def start(self, argv: list[str], stdio: tuple[int, int] | None = None) -> int:
        """Makes the cgroup and forks the init (in a new PID namespace, its own session: a
        signal to its process group reaches the whole job); the init's pid. ``stdio``: the
        job's stdout and stderr, else this process's. Raises ``OSError`` when the sandbox
        cannot be made (nothing left behind)."""
        p = self.policy
        try:
            self.groups.create(p["mem_mb"], p["cpus"], p["max_processes"])
            # The PID namespace takes effect for the children; the others are the init's own,
            # so that this process keeps the host's view (it writes the report there).
            _check(_libc.unshare(CLONE_NEWPID), "unshare")
            init = os.fork()
        except OSError:
            self.groups.destroy()
            raise
        if init == 0:
            code = SETUP_FAILED
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until the init forwards it
                if stdio is not None:
                    os.setsid()
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(stdio[0], 1)
                    os.dup2(stdio[1], 2)
                code = _init(p, self.groups, argv)
            except BaseException as exc:  # never back into the caller's code
                with contextlib.suppress(BaseException):
                    os.write(2, f"sandbox: could not start: {exc}\n".encode())
            finally:
                os._exit(code)
        return init

    def finish(self, status: int) -> int:
        """After the init's end (its wait status): writes the report, removes the cgroup, and
        returns the job's exit code (128 + N when killed by signal N)."""
        code = _code(status)
        report = {**self.groups.report(), "mem_mb": self.policy["mem_mb"], "exit_code": code}
        self.groups.destroy()
        tmp = Path(self.policy["report"] + ".tmp")
        tmp.write_text(json.dumps(report))
        os.replace(tmp, self.policy["report"])
        return code


def launch(policy_path: Path, argv: list[str]) -> int:
    sandbox = Sandbox(policy_path)
    try:
        init = sandbox.start(argv)
    except OSError as exc:
        print(f"sandbox: could not confine the job: {exc}", file=sys.stderr)
        return SETUP_FAILED

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    _, status = os.waitpid(init, 0)
    return sandbox.finish(status)


if __name__ == "__main__":
    sys.exit(launch(Path(sys.argv[1]), sys.argv[2:]))
