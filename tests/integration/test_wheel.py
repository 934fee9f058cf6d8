"""The package as users get it: a wheel built from the repository, installed with its
dependencies into a fresh virtualenv outside it, and that `metascheduler` alone (nothing from
the repository on its path, its own working folder) deploys a market to a real node, registers
and approves a provider, deposits, submits a job, lists it and audits the grid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from metascheduler.chain.artifacts import REPO_ROOT
from metascheduler.devnet.anvil import dev_account

pytestmark = [pytest.mark.chain, pytest.mark.install]

SPEC = """\
name: hello
resources: {tasks: 1, cpus_per_task: 1, mem_per_cpu_mb: 256}
script: |
  echo hello from the grid
"""


def _run(cmd: list[str | Path], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    res = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0, f"{cmd}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding the wheel and its dependencies (from the package index, through
    pip's cache): a full install, as a user's."""
    root = tmp_path_factory.mktemp("wheel")
    assert not root.resolve().is_relative_to(REPO_ROOT)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [sys.executable, "-m", "pip"]
    _run(
        [*pip, "wheel", "-q", "--no-deps", "-w", root / "dist", REPO_ROOT],
        cwd=root,
        env=env,
        timeout=600,
    )
    (wheel,) = (root / "dist").glob("metascheduler-*.whl")
    _run([sys.executable, "-m", "venv", root / "venv"], cwd=root, env=env, timeout=300)
    _run([root / "venv/bin/pip", "install", "-q", wheel], cwd=root, env=env, timeout=1200)
    return root / "venv"


def test_the_installed_command_runs_a_market(installed: Path, anvil: Any, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    # Nothing of the repository's: no PYTHONPATH, another home, the virtualenv's bin first.
    env = {"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    where = _run(
        [
            installed / "bin/python",
            "-c",
            "import sys, metascheduler; print(metascheduler.__file__); print(sys.path)",
        ],
        cwd=work,
        env=env,
        timeout=60,
    )
    assert where.startswith(str(installed)) and str(REPO_ROOT) not in where

    def ms(*args: str, key: int | None = None) -> dict[str, Any]:
        e = dict(env)
        cmd = ["metascheduler", "--rpc-url", anvil.url]
        if key is not None:
            e["MS_KEY"] = dev_account(key).key.hex()
            cmd += ["--key-env", "MS_KEY"]
        if (work / "deployment.json").exists():
            e["MS_DEPLOYMENT"] = str(work / "deployment.json")
        out = _run([*cmd, *args, "--json"], cwd=work, env=e, timeout=120)
        obj: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return obj

    dep = ms("deploy", "--oracle", dev_account(1).address, "--out", "deployment.json", key=0)
    assert dep["chain_id"] == 31337 and dep["market"].startswith("0x")
    provider = dev_account(12).address
    reg = ms(
        "provider", "register", "--cpus", "8", "--mem-mb", "8192", "--cpu-price", "0.001", key=12
    )
    assert reg["status"] == "REGISTERED"
    assert ms("admin", "approve-provider", provider, key=0)["status"] == "APPROVED"
    assert ms("credits", "faucet", key=13)["amount"] > 0
    assert ms("credits", "deposit", "5", key=13)["amount"] == 5_000_000
    (work / "hello.yaml").write_text(SPEC)
    job = ms("job", "submit", "hello.yaml", "--escrow", "1", "--max-price", "0.01", key=13)
    listed = ms("job", "list", key=13)
    assert [j["job_id"] for j in listed["jobs"]] == [job["job_id"]]
    assert listed["jobs"][0]["state"] == "PENDING"
    audit = ms("audit", "all")
    assert audit["ok"] is True and audit["market"] == dep["market"] and audit["jobs"] == 1


def test_the_wheel_carries_the_c_supervisors_source_not_a_build(installed: Path) -> None:
    """A pip-installed agent builds the C job supervisor on first use, from the source the
    wheel carries (a binary built here would not suit every host)."""
    (package,) = installed.glob("lib/python3*/site-packages/metascheduler/agent/backends")
    assert (package / "supervisor.c").is_file()
    assert not list(package.glob("ms-supervisor-*"))
