"""A one-minute soak of the whole grid under faults (scripts/soak.py): nothing lost or run twice,
credits conserved, the audit clean, no server error. The full ten-minute run is a script, not a
test; this short one keeps the soak itself working in CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metascheduler.chain.artifacts import REPO_ROOT

# Needs anvil like every chain test; without it the soak exits with the reason and this fails
# (nothing here skips).
pytestmark = pytest.mark.chain


def test_one_minute_soak_keeps_every_promise(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "soak.py"),
            "--minutes",
            "1",
            "--seed",
            "1",
            "--root",
            str(tmp_path / "soak"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO_ROOT,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"the soak printed nothing; stderr:\n{proc.stderr[-3000:]}"
    tail = "\n".join(lines[-40:])
    verdict = json.loads(lines[-1])
    assert proc.returncode == 0, f"soak exited {proc.returncode}:\n{tail}\n{proc.stderr[-3000:]}"
    assert verdict["lost"] == 0, tail
    assert verdict["doubled"] == 0, tail
    assert verdict["credit_drift"] == 0, tail
    assert verdict["audit_ok"] is True, tail
    assert verdict["api_5xx"] == 0, tail
    # The run did what it says: jobs flowed and faults were injected.
    assert verdict["jobs"] > 0, tail
    kinds = ("oracle_kill", "agent_kill", "rpc_cut", "reorg", "api_garbage", "cli_garbage")
    assert verdict["faults_total"] == sum(verdict["faults"].get(k, 0) for k in kinds) > 0, tail
