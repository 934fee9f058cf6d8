"""Writes the contracts' ABIs and bytecode from forge's `out/` into the package
(`src/metascheduler/chain/contracts/<Name>.json`), so that an installed metascheduler talks to a
market without the repository. `make build` runs it after `forge build`, and so does the wheel's
build (setup.py). Standard library only: the build runs it before any dependency is installed.

Usage: python scripts/export_abi.py [--out OUT] [--dest DEST]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out"
DEST = ROOT / "src" / "metascheduler" / "chain" / "contracts"
#: The contracts the package binds.
CONTRACTS = ("JobMarket", "Credit")


def packaged(name: str, out_dir: Path = OUT) -> dict[str, Any]:
    """What the package keeps of forge's artifact for contract `name`."""
    path = out_dir / f"{name}.sol" / f"{name}.json"
    data = json.loads(path.read_text())
    meta = data["metadata"]
    return {
        "contractName": name,
        "compiler": meta["compiler"]["version"],
        "abi": data["abi"],
        "bytecode": data["bytecode"]["object"],
        "deployedBytecode": data["deployedBytecode"]["object"],
        # source path (relative to the repo) -> keccak256 of the content it was compiled from
        "sources": {src: m["keccak256"] for src, m in sorted(meta["sources"].items())},
    }


def export(out_dir: Path = OUT, dest: Path = DEST) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONTRACTS:
        path = dest / f"{name}.json"
        path.write_text(json.dumps(packaged(name, out_dir), sort_keys=True) + "\n")
        written.append(path)
    return written


def ensure(out_dir: Path = OUT, dest: Path = DEST) -> None:
    """Exports from `out_dir` when forge's artifacts are there; else keeps what `dest` already
    holds (a source distribution carries it); else says what to run."""
    if all((out_dir / f"{n}.sol" / f"{n}.json").exists() for n in CONTRACTS):
        export(out_dir, dest)
        return
    if all((dest / f"{n}.json").exists() for n in CONTRACTS):
        return
    raise SystemExit(
        f"no compiled contracts in {out_dir} nor in {dest}: run `make build` (forge build) "
        "in the repository before building the package"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT, help="forge's output folder")
    p.add_argument("--dest", type=Path, default=DEST, help="the package's artifact folder")
    args = p.parse_args()
    for path in export(args.out, args.dest):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
