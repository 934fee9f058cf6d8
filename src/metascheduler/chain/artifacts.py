"""Compiled contract artifacts (ABI, bytecode) by contract name, as the package carries them.

`scripts/export_abi.py` writes `chain/contracts/<Name>.json` from forge's `out/` (`make build` runs
it, and so does the wheel's build), so an installed metascheduler needs no repository.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_utils import keccak

from metascheduler.errors import MetaschedulerError

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGED = Path(__file__).resolve().parent / "contracts"


class ArtifactError(MetaschedulerError, RuntimeError):
    """The contracts' build artifacts are missing or unreadable; the message says which."""

    kind = "artifacts"


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    #: the runtime code as compiled (immutables still zero): what a deployment's code differs
    #: from only where the constructor wrote immutables
    deployed_bytecode: str
    #: source path (relative to the repo) -> keccak256 the artifact was compiled from
    sources: dict[str, str]


@cache
def load_artifact(name: str) -> Artifact:
    """Loads `<Name>.json` from the package."""
    path = PACKAGED / f"{name}.json"
    if not path.exists():
        raise ArtifactError(
            f"no compiled artifact for contract {name!r} at {path}: in the repository, run "
            "`make build` (forge build, then scripts/export_abi.py); an installed package "
            "carries it, so reinstall it from a wheel built that way"
        )
    data = json.loads(path.read_text())
    return Artifact(name, data["abi"], data["bytecode"], data["deployedBytecode"], data["sources"])


def stale_sources(name: str, root: Path = REPO_ROOT) -> list[str]:
    """Sources of `name` under `contracts/` whose content differs from what the packaged
    artifact was compiled from."""
    artifact = load_artifact.__wrapped__(name)
    stale = []
    for src, digest in artifact.sources.items():
        if not src.startswith("contracts/"):
            continue  # libraries from node_modules are pinned by the lock file
        path = root / src
        if not path.exists() or "0x" + keccak(path.read_bytes()).hex() != digest:
            stale.append(src)
    return stale
