"""The local backend's C job supervisor (``supervisor.c``, shipped in the package): found built,
or built here with the system's C compiler.

``make build`` builds it next to its source (``python -m
metascheduler.agent.backends.csupervisor``); a pip-installed agent builds it on first use into
its local backend's working folder. Its name holds a hash of the source and flags, so an
upgraded package never runs an older build, and it is written under a temporary name and then
renamed, so a half-written binary is never run. Where no compiler is found, the Python
supervisor (``local_runner.py``) stays in use, and the agent says so once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("supervisor.c")
PREFIX = "ms-supervisor-"
#: (No -Werror: a newer compiler's new warning must not cost a host the C supervisor; the tests
#: build it with warnings as errors.)
CFLAGS = ("-O2", "-Wall", "-Wextra")
#: How it is linked, best first: statically against musl (musl-tools), whose start-up is a
#: fraction of a millisecond; statically against glibc (libc6-dev), whose start-up probes the
#: CPU with instructions a virtual machine traps (about 0.5 ms of CPU per job, measured on a
#: 2-core VM), but runs no dynamic loader; dynamically (the loader probes the same).
LINKS = (("musl-gcc", ("-static",)), ("", ("-static",)), ("", ()))
COMPILE_TIMEOUT_S = 120.0
HOW_TO_GET_IT = "install gcc, libc6-dev and musl-tools (bash scripts/sandbox.sh install)"
log = logging.getLogger("metascheduler.agent.backends.local")


class BuildError(Exception):
    """The C supervisor could not be built; the reason in words."""


def binary_name() -> str:
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()
    return PREFIX + digest[:16]


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def build(folder: Path) -> Path:
    """Compiles the supervisor into ``folder`` (atomically); its path. Raises ``BuildError``."""
    cc = compiler()
    if cc is None:
        raise BuildError(f"no C compiler (cc or gcc) on PATH; {HOW_TO_GET_IT}")
    target = folder / binary_name()
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    errors = ""
    try:
        for wrapper, link in LINKS:
            program = shutil.which(wrapper) if wrapper else cc
            if program is None:
                continue
            done = subprocess.run(
                [program, *CFLAGS, *link, "-o", str(tmp), str(SOURCE)],
                capture_output=True,
                text=True,
                timeout=COMPILE_TIMEOUT_S,
            )
            if done.returncode == 0:
                tmp.chmod(0o755)
                os.replace(tmp, target)
                return target
            errors = done.stderr.strip()[-400:]
    except (OSError, subprocess.SubprocessError) as exc:
        errors = str(exc)
    finally:
        tmp.unlink(missing_ok=True)
    raise BuildError(f"{cc} could not build {SOURCE.name}: {errors}")


def locate(workdir: Path) -> Path:
    """The built supervisor: next to its source (``make build``), else in ``workdir``, else
    built there now. Raises ``BuildError``."""
    name = binary_name()
    for folder in (SOURCE.parent, workdir):
        found = folder / name
        if found.is_file() and os.access(found, os.X_OK):
            return found
    return build(workdir)


def fallback_notice(reason: BuildError) -> str:
    """The one line an agent logs when its jobs are supervised by the Python fallback."""
    return (
        f"local backend: the C job supervisor is not available ({reason}); jobs are supervised "
        "in Python, at several times the CPU per job. For the faster path, "
        f"{HOW_TO_GET_IT} and restart the agent"
    )


def main() -> int:
    """Builds the supervisor next to its source and removes builds of older sources there.
    Without a compiler it says so and succeeds: agents then use the Python supervisor."""
    if compiler() is None:
        print(f"csupervisor: not built: no C compiler (cc or gcc) on PATH; {HOW_TO_GET_IT}")
        return 0
    try:
        built = build(SOURCE.parent)
    except BuildError as exc:
        print(f"csupervisor: {exc}", file=sys.stderr)
        return 1
    for old in SOURCE.parent.glob(PREFIX + "*"):
        if old != built:
            old.unlink(missing_ok=True)
    print(f"built {built}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
