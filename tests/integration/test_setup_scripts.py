"""The set-up scripts work from a clone anywhere: in a private (0700) folder such as a home
folder, beside another clone's Slurm and PostgreSQL (the machine's shared ones keep running
through these tests), and over daemons a deleted clone left behind.

Each test copies `scripts/` into a fresh folder under a 0700 parent and drives the copy's
scripts as `make system-deps` does. The daemons a test starts are stopped at its end, by pid and
only when they run from the copy's own files, so a test never stops another clone's daemons."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[2]
#: Where scripts/postgres.sh keeps each clone's cluster when run as root.
PG_CLUSTERS = Path("/var/lib/postgresql/metascheduler")

pytestmark = [
    pytest.mark.setup_scripts,
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="the set-up scripts install Debian packages and run daemons as other users: root",
    ),
]


class Clone:
    """A copy of the repo's set-up scripts in its own folder, standing for a clone."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copytree(REPO / "scripts", root / "scripts")
        self.slurm_conf = root / "var" / "slurm" / "slurm.conf"

    def run(self, script: str, command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.root / "scripts" / script), command],
            cwd=self.root,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def slurm(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            env={**os.environ, "SLURM_CONF": str(self.slurm_conf)},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def slurm_daemons(self) -> list[int]:
        """Pids of the slurmctld and slurmd started from this clone's slurm.conf."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            name = os.path.basename(argv[0].decode())
            if name in ("slurmctld", "slurmd") and str(self.slurm_conf).encode() in argv:
                found.append(int(proc.name))
        return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _kill(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _free_port_pair() -> int:
    """A port p such that p and p + 1 are both free now."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def private(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o700)
    return home


@pytest.fixture
def clones(private: Path) -> Iterator[dict[str, Clone]]:
    """Clones by name, made on demand; their daemons and clusters are gone afterwards."""
    made: dict[str, Clone] = {}
    yield made
    for clone in made.values():
        _kill(clone.slurm_daemons())
    _remove_clusters_of(private)


def _remove_clusters_of(private: Path) -> None:
    """Stops and deletes the PostgreSQL clusters kept for clones under `private`."""
    for marker in PG_CLUSTERS.glob("*/clone"):
        if not marker.read_text().startswith(f"{private}/"):
            continue
        pidfile = marker.parent / "data" / "postmaster.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            if _alive(pid):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: nothing here is worth keeping
                _kill([pid])
        shutil.rmtree(marker.parent)


def _clone(clones: dict[str, Clone], private: Path, name: str) -> Clone:
    clones[name] = Clone(private / name)
    return clones[name]


def _data_directory(url: str) -> str:
    engine = create_engine(url.replace("metascheduler:metascheduler@", "postgres@"))
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW data_directory")).scalar_one())
    finally:
        engine.dispose()


def _postgres_pid(data_dir: str) -> int:
    return int(Path(data_dir, "postmaster.pid").read_text().split()[0])


def _assert_runs_a_job(clone: Clone, tmp_path: Path) -> None:
    out = tmp_path / f"{clone.root.name}-job.out"
    job = clone.slurm(
        "sbatch", "--wait", "-p", "beta", "-o", str(out), "--wrap", "echo ran", timeout=120
    )
    assert job.returncode == 0, f"sbatch failed: {job.stdout}{job.stderr}"
    assert out.read_text().strip() == "ran"


def _assert_controller_is(clone: Clone) -> None:
    config = clone.slurm("scontrol", "show", "config")
    assert config.returncode == 0, config.stderr
    state = next(
        line.split("=", 1)[1].strip()
        for line in config.stdout.splitlines()
        if line.startswith("StateSaveLocation")
    )
    assert state == str(clone.root / "var" / "slurm" / "state"), (
        f"the controller answering this clone's slurm.conf is another clone's (state {state})"
    )


@pytest.mark.postgres
def test_postgres_starts_from_a_private_clone_beside_another_cluster(
    clones: dict[str, Clone], private: Path
) -> None:
    clone = _clone(clones, private, "clone")
    first = clone.run("postgres.sh", "install-and-start")
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip().splitlines()[-1]
    data = _data_directory(url)
    assert not data.startswith(str(private)), "postgres cannot reach a private folder"
    assert Path(data).parent.joinpath("clone").read_text().strip() == str(clone.root)

    again = clone.run("postgres.sh", "install-and-start")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == url
    assert "reusing this clone's cluster" in again.stderr
    assert clone.run("postgres.sh", "url").stdout.strip() == url

    removed = clone.run("postgres.sh", "remove")
    assert removed.returncode == 0, removed.stderr
    assert not Path(data).exists()


@pytest.mark.postgres
def test_postgres_replaces_a_deleted_clones_cluster_on_its_port(
    clones: dict[str, Clone], private: Path
) -> None:
    port = str(_free_port_pair())
    gone = _clone(clones, private, "gone")
    started = gone.run("postgres.sh", "install-and-start", MS_PG_PORT=port)
    assert started.returncode == 0, started.stderr
    stale_data = _data_directory(started.stdout.strip().splitlines()[-1])
    stale_pid = _postgres_pid(stale_data)
    shutil.rmtree(gone.root)

    clone = _clone(clones, private, "clone")
    result = clone.run("postgres.sh", "install-and-start", MS_PG_PORT=port)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip().splitlines()[-1]
    assert url.endswith(f":{port}/metascheduler")
    assert Path(_data_directory(url)).parent.joinpath("clone").read_text().strip() == str(
        clone.root
    )
    assert not _alive(stale_pid), "the deleted clone's server still runs"
    assert not Path(stale_data).exists(), "the deleted clone's data was left behind"
    assert "deleted clone" in result.stderr


@pytest.mark.slurm
def test_slurm_starts_from_a_private_clone_beside_another_clones_slurm(
    clones: dict[str, Clone], private: Path, tmp_path: Path
) -> None:
    clone = _clone(clones, private, "clone")
    first = clone.run("slurm.sh", "install-and-start")
    assert first.returncode == 0, first.stdout + first.stderr
    _assert_controller_is(clone)
    _assert_runs_a_job(clone, tmp_path)

    again = clone.run("slurm.sh", "install-and-start")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reusing this clone's slurmctld" in again.stdout
    daemons = clone.slurm_daemons()
    assert len(daemons) == 2

    stopped = clone.run("slurm.sh", "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(_alive(p) for p in daemons)
    shared = os.environ.get("SLURM_CONF")
    if shared and Path(shared).exists():
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
        assert "UP" in ping.stdout, f"stopping a clone's Slurm hurt the shared one: {ping.stdout}"


@pytest.mark.slurm
def test_slurm_replaces_a_deleted_clones_daemons_on_its_ports(
    clones: dict[str, Clone], private: Path, tmp_path: Path
) -> None:
    port = str(_free_port_pair())
    gone = _clone(clones, private, "gone")
    started = gone.run("slurm.sh", "install-and-start", MS_SLURMCTLD_PORT=port)
    assert started.returncode == 0, started.stdout + started.stderr
    stale = gone.slurm_daemons()
    assert len(stale) == 2, f"the first clone's daemons did not start: {started.stdout}"
    shutil.rmtree(gone.root)

    clone = _clone(clones, private, "clone")
    result = clone.run("slurm.sh", "install-and-start", MS_SLURMCTLD_PORT=port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deleted clone" in result.stdout + result.stderr
    assert not any(_alive(p) for p in stale), "the deleted clone's daemons still run"
    assert f"SlurmctldPort={port}" in clone.slurm_conf.read_text()
    _assert_controller_is(clone)
    _assert_runs_a_job(clone, tmp_path)
