"""A short soak of the whole grid at the default job rate under faults (scripts/soak.py): nothing
lost or run twice, credits conserved, the audit clean, no server error, no service crashed, the
providers paid and the customers not overbilled for what the backends delivered, and the sampled
jobs' log lines and outputs back to their customers intact. The ten-minute run is a script, not a
test; this short one keeps the soak itself working in CI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metascheduler.chain.artifacts import REPO_ROOT
from metascheduler.devnet.soak.faults import FAULT_KINDS

# Needs anvil like every chain test, and SeaweedFS from `make deps`; without them the soak exits
# with the reason and this fails (nothing here skips). It uses Slurm and PostgreSQL when the
# machine has them (`make test` exports MS_TEST_POSTGRES_URL), else local agents and SQLite.
pytestmark = pytest.mark.chain

BURST = 200


def test_short_soak_keeps_every_promise(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "soak.py"),
            "--minutes",
            "0.5",
            "--seed",
            "1",
            "--customers",
            "3",
            "--burst",
            str(BURST),
            "--results-sample",
            "40",
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
    tail = "\n".join(lines[-60:])
    verdict = json.loads(lines[-1])
    assert proc.returncode == 0, f"soak exited {proc.returncode}:\n{tail}\n{proc.stderr[-3000:]}"
    assert verdict["lost"] == 0, tail
    assert verdict["doubled"] == 0, tail
    assert verdict["credit_drift"] == 0, tail
    assert verdict["audit_ok"] is True, tail
    assert verdict["api_5xx"] == 0, tail
    assert verdict["services_crashed"] == 0, tail
    assert verdict["provider_underpaid"] == 0, tail
    assert verdict["customer_overbilled"] == 0, tail
    assert verdict["free_compute_s"] <= verdict["free_compute_bound_s"], tail
    assert verdict["logs_lost"] == 0 and verdict["logs_doubled"] == 0, tail
    assert verdict["outputs_mismatch"] == 0, tail
    # The run did what it says: the fast stream's jobs ran, were billed and read back, the burst
    # was sent, and faults of the new kinds were injected beside the old.
    assert verdict["load_jobs_submitted"] >= 80, tail
    assert verdict["delivered_s"] > 0 and verdict["billed_s"] > 0, tail
    assert verdict["results_checked"] > 0, tail
    assert verdict["spam_jobs"] == BURST, tail
    assert verdict["faults_total"] == sum(verdict["faults"].get(k, 0) for k in FAULT_KINDS) > 0
    for kind in ("api_down", "hostile_specs", "burst"):
        assert verdict["faults"].get(kind, 0) >= 1, tail
