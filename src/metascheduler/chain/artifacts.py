"""Compiled contract artifacts (ABI, bytecode) by contract name, from forge's `out/` folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_utils import keccak

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = REPO_ROOT / "out"


class ArtifactError(RuntimeError):
    pass


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    #: source path (relative to the repo) -> keccak256 the artifact was compiled from
    sources: dict[str, str]


@cache
def load_artifact(name: str, out_dir: Path = DEFAULT_OUT) -> Artifact:
    """Loads `out/<Name>.sol/<Name>.json`, as `forge build` writes it."""
    path = out_dir / f"{name}.sol" / f"{name}.json"
    if not path.exists():
        raise ArtifactError(
            f"no compiled artifact for contract {name!r} at {path}: run `make build` "
            "(forge build) in the repository first"
        )
    data = json.loads(path.read_text())
    sources = {src: meta["keccak256"] for src, meta in data["metadata"]["sources"].items()}
    return Artifact(name, data["abi"], data["bytecode"]["object"], sources)


def stale_sources(name: str, root: Path = REPO_ROOT, out_dir: Path = DEFAULT_OUT) -> list[str]:
    """Sources of `name` under `contracts/` whose content differs from what was compiled."""
    artifact = load_artifact.__wrapped__(name, out_dir)
    stale = []
    for src, digest in artifact.sources.items():
        if not src.startswith("contracts/"):
            continue  # libraries from node_modules are pinned by the lock file
        path = root / src
        if not path.exists() or "0x" + keccak(path.read_bytes()).hex() != digest:
            stale.append(src)
    return stale
