"""Container runtimes behind one small interface, so that a provider can add Apptainer or
Enroot beside podman: check the runtime works, bring an image in (from an archive or a
registry), forget it, and give the command that runs a job in it.

The command runs inside the job's sandbox (``sandbox_launch.py``), as root there, so that a
rootful runtime can start the container as the job user; the sandbox's PID namespace ends the
container with the job, and ``@JOB_CGROUP@`` in the command stands for the job's memory cgroup,
under which the container's cgroups go (so Slurm's accounting still covers it).
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from metascheduler.errors import MetaschedulerError

JOB_CGROUP = "@JOB_CGROUP@"
#: Where the job's own folder, and its output folder, appear inside the container.
CONTAINER_WORK = "/work"
CONTAINER_OUTPUTS = "/outputs"


class RuntimeFailure(MetaschedulerError):
    """A runtime operation failed; the message says what, in words."""

    kind = "runtime"


@dataclass(frozen=True)
class ContainerJob:
    """What the runtime needs to run one job."""

    name: str
    uid: int
    gid: int
    cpus: int
    mem_mb: int
    max_processes: int
    network: bool
    work: Path
    #: The folder the agent collects output files from (``$MS_OUTPUT_DIR``), if any.
    outputs: Path | None
    env: Mapping[str, str]
    argv: Sequence[str]


class ContainerRuntime(ABC):
    name: str

    @abstractmethod
    def problems(self) -> list[str]:
        """Why this runtime cannot run containers here, in words; empty when it can."""

    @abstractmethod
    def has(self, digest: str) -> bool:
        """Whether the image of this digest is already in the runtime's storage."""

    @abstractmethod
    def load(self, archive: Path, digest: str) -> str:
        """Brings an OCI or docker archive in; returns the reference to run it by."""

    @abstractmethod
    def pull(self, reference: str, digest: str) -> str:
        """Pulls ``name@sha256:...`` from its registry; returns the reference to run it by."""

    @abstractmethod
    def forget(self, digest: str) -> None:
        """Removes the image (the cache evicted its archive)."""

    @abstractmethod
    def reference(self, digest: str) -> str:
        """The reference an image brought in by ``load`` or ``pull`` runs by."""

    @abstractmethod
    def run_command(self, image: str, job: ContainerJob) -> list[str]:
        """The command that runs the job in the image, attached (its exit code is the job's)."""


class Podman(ContainerRuntime):
    """Rootful podman with runc (crun refuses hybrid cgroup set-ups) and cgroupfs (no systemd).

    Images are tagged ``localhost/metascheduler-image:<sha256 of the archive>``: the cache's
    digest names the image, whatever tags the archive carried.
    """

    name = "podman"
    REPO = "localhost/metascheduler-image"

    def __init__(self, binary: str = "podman", oci_runtime: str = "runc", timeout_s: float = 300):
        self.binary = binary
        self.oci_runtime = oci_runtime
        self.timeout_s = timeout_s

    def _base(self) -> list[str]:
        return [self.binary, "--runtime", self.oci_runtime, "--cgroup-manager", "cgroupfs"]

    def _run(self, args: list[str], what: str) -> str:
        try:
            proc = subprocess.run(
                self._base() + args,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise RuntimeFailure(f"{what}: {self.binary} is not installed") from None
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"{what}: podman took longer than {self.timeout_s:g} s") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeFailure(f"{what}: {last}")
        return proc.stdout

    def problems(self) -> list[str]:
        found = []
        for binary in (self.binary, self.oci_runtime):
            if shutil.which(binary) is None:
                found.append(f"{binary} is not installed (bash scripts/sandbox.sh install)")
        return found

    def reference(self, digest: str) -> str:
        return f"{self.REPO}:{digest}"

    def has(self, digest: str) -> bool:
        try:
            self._run(["image", "exists", self.reference(digest)], "podman image exists")
        except RuntimeFailure:
            return False
        return True

    def load(self, archive: Path, digest: str) -> str:
        out = self._run(["load", "-q", "-i", str(archive)], "loading the image")
        loaded = out.strip().splitlines()[-1].split(": ", 1)[-1].split(",")[0].strip()
        if not loaded:
            raise RuntimeFailure(f"loading the image: podman named no image ({out.strip()!r})")
        self._run(["tag", loaded, self.reference(digest)], "tagging the image")
        return self.reference(digest)

    def pull(self, reference: str, digest: str) -> str:
        self._run(["pull", "-q", reference], f"pulling {reference}")
        self._run(["tag", reference, self.reference(digest)], "tagging the image")
        return self.reference(digest)

    def forget(self, digest: str) -> None:
        with contextlib.suppress(RuntimeFailure):  # gone already
            self._run(["rmi", "-f", self.reference(digest)], "removing the image")

    def run_command(self, image: str, job: ContainerJob) -> list[str]:
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        nproc = job.max_processes if nproc == resource.RLIM_INFINITY else nproc
        args = [
            *self._base(),
            "run",
            "--rm",
            "--name",
            job.name,
            "--user",
            f"{job.uid}:{job.gid}",
            "--network",
            "host" if job.network else "none",
            "--cgroup-parent",
            JOB_CGROUP,
            "--memory",
            f"{job.mem_mb}m",
            "--memory-swap",
            f"{job.mem_mb}m",
            "--cpus",
            str(job.cpus),
            "--pids-limit",
            str(job.max_processes),
            # This VM cannot raise rlimits (no CAP_SYS_RESOURCE): ask for what it has.
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            f"nproc={nproc}:{nproc}",
            "--cap-drop",
            "all",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,nosuid,nodev,mode=1777",
            "--volume",
            f"{job.work}:{CONTAINER_WORK}:rw",
            "--workdir",
            CONTAINER_WORK,
            "--env",
            f"HOME={CONTAINER_WORK}",
        ]
        env = dict(job.env)
        if job.outputs is not None:
            args += ["--volume", f"{job.outputs}:{CONTAINER_OUTPUTS}:rw"]
            env["MS_OUTPUT_DIR"] = CONTAINER_OUTPUTS
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        return [*args, image, *job.argv]


RUNTIMES: dict[str, type[ContainerRuntime]] = {"podman": Podman}


def make_runtime(name: str) -> ContainerRuntime:
    try:
        return RUNTIMES[name]()
    except KeyError:
        raise RuntimeFailure(
            f"unknown container runtime {name!r}: choose one of {', '.join(RUNTIMES)}"
        ) from None
