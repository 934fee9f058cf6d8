"""The compiled artifacts match the contract sources, and the Python enums match Solidity's."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

from metascheduler.chain import JobStatus, ProviderStatus, load_artifact, stale_sources
from metascheduler.chain.artifacts import PACKAGED, REPO_ROOT

#: The export `make build` and the wheel's build run (a script: it runs before any dependency).
EXPORT = runpy.run_path(str(REPO_ROOT / "scripts" / "export_abi.py"))
INTERFACE = REPO_ROOT / "contracts" / "src" / "interfaces" / "IJobMarket.sol"


def test_artifacts_are_not_stale() -> None:
    for name in ("JobMarket", "Credit"):
        stale = stale_sources(name)
        assert not stale, f"{name} was compiled from older sources {stale}: run `make build`"


def test_packaged_artifacts_are_forges_latest_build() -> None:
    """What the package carries is what `forge build` last wrote (`make build` exports it)."""
    for name in EXPORT["CONTRACTS"]:
        want = EXPORT["packaged"](name, EXPORT["OUT"])
        assert json.loads((PACKAGED / f"{name}.json").read_text()) == want, (
            f"the packaged {name} differs from out/: run `make build`"
        )


def test_artifacts_carry_abi_and_bytecode() -> None:
    art = load_artifact("JobMarket")
    names = {i.get("name") for i in art.abi}
    assert {"requestJob", "placeJobs", "providerBatch", "JobEnded", "JobUnexpectedStatus"} <= names
    assert art.bytecode.startswith("0x") and len(art.bytecode) > 1000


def _solidity_enum(name: str, source: Path) -> list[str]:
    m = re.search(rf"enum {name} \{{([^}}]*)\}}", source.read_text())
    assert m, f"enum {name} not found in {source}"
    return [s.strip() for s in m.group(1).split(",") if s.strip()]


def test_job_status_matches_solidity() -> None:
    assert _solidity_enum("JobStatus", INTERFACE) == [s.name for s in JobStatus]


def test_provider_status_matches_solidity() -> None:
    assert _solidity_enum("ProviderStatus", INTERFACE) == [s.name for s in ProviderStatus]


def test_job_status_matches_the_abi() -> None:
    # The ABI names the enum type in internalType, and its values are uint8 positions.
    art = load_artifact("JobMarket")
    ev = next(i for i in art.abi if i.get("name") == "JobStatusChanged")
    assert ev["inputs"][1]["internalType"] == "enum JobStatus"
    assert [s.value for s in JobStatus] == list(range(8))
