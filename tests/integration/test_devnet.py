"""`metascheduler devnet up --once`: the whole local grid runs its demo and exits 0 only when
every demo job reached its expected state and the audit is clean (the stored results of every
job that committed a digest included)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from metascheduler.chain.deployment import load_deployment

pytestmark = pytest.mark.chain


def test_devnet_once_runs_the_demo_to_a_clean_audit(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from metascheduler.devnet.demo import run_devnet_command; "
        f"sys.exit(run_devnet_command(once=True, root=Path({str(tmp_path / 'devnet')!r})))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=420,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", **_slurm_env()},
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    for state in ("FINISHED", "FAILED", "CANCELLED", "OUT_OF_CREDITS"):
        # the demo's table row: expected state, reached state, verdict
        assert re.search(rf"{state}\s+│\s+{state}\s+│\s+ok", out), f"no job ended {state}"
    # A container job reading a staged input (this machine runs podman: scripts/sandbox.sh).
    assert re.search(r"container\s+│\s+FINISHED\s+│\s+FINISHED\s+│\s+ok", out), out[-4000:]
    assert "audit of the whole grid: clean" in out
    # The hello job's line and output file, as its customer reads them, with the digest.
    assert "stdout: hello from the grid" in out
    assert re.search(
        r"outputs: hello\.txt in .*?result digest\s+0x[0-9a-f]{64}\s+checked against the digest "
        r"on chain",
        out,
        re.S,
    )
    # The audit recomputed every committed digest from the stored ciphertext.
    assert re.search(r"stored results of [1-9]\d* jobs? match the digests committed", out), out
    assert "MISMATCH" not in out
    # The CLI's settings for this grid: its RPC URL and deployment file.
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in (tmp_path / "devnet" / "env.sh").read_text().splitlines()
    )
    dep = load_deployment(Path(env["MS_DEPLOYMENT"]))
    assert dep.chain_id == 31337 and dep.market.startswith("0x") and "MS_RPC_URL" in env


def _slurm_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("SLURM_CONF", "HOME", "LANG")}
