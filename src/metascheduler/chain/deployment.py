"""A deployment file: where a market lives (chain id, addresses, deployment block) and what code
was deployed there (its hash), written by `metascheduler deploy` and read by every service and
command in place of separate address and from-block settings."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from metascheduler.errors import InputError

#: The file's format; a reader refuses another.
FORMAT = "metascheduler-deployment/1"
_FIELDS = {
    "chain_id": int,
    "market": str,
    "credit": str,
    "block": int,
    "admin": str,
    "oracle": str,
    "market_code_hash": str,
    "credit_code_hash": str,
}


class DeploymentError(InputError, ValueError):
    """A deployment file that cannot be used; the message says which file and why."""

    kind = "deployment"


@dataclass(frozen=True)
class Deployment:
    market: str
    credit: str
    #: the block the market was deployed in: where reading its events starts
    block: int
    chain_id: int
    admin: str
    oracle: str
    #: keccak256 of the deployed runtime code of each contract ("0x..." hex)
    market_code_hash: str
    credit_code_hash: str

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    def check_chain(self, chain_id: int, where: str) -> None:
        """Refuses a chain other than the one the market was deployed on."""
        if chain_id != self.chain_id:
            raise DeploymentError(
                f"the deployment {where} is for chain id {self.chain_id}, but the RPC endpoint "
                f"answers chain id {chain_id}: give the RPC URL of the chain it was deployed on, "
                "or the deployment file of this chain"
            )


def write_deployment(dep: Deployment, path: Path) -> Path:
    """Writes the file, refusing to overwrite one (another deployment's record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(dep.to_json(), f, indent=2)
        f.write("\n")
    return path


def load_deployment(path: Path) -> Deployment:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DeploymentError(
            f"deployment file {path} not found: give the file `metascheduler deploy` wrote"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeploymentError(f"deployment file {path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DeploymentError(f"deployment file {path} is not JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DeploymentError(
            f"deployment file {path} is not a metascheduler deployment (its format should be "
            f"{FORMAT!r}): give the file `metascheduler deploy` wrote"
        )
    wrong = [k for k, t in _FIELDS.items() if not isinstance(data.get(k), t)]
    if wrong:
        raise DeploymentError(
            f"deployment file {path} lacks or mistypes {', '.join(wrong)}: write it again with "
            "`metascheduler deploy`, or fix those fields"
        )
    return Deployment(**{k: data[k] for k in _FIELDS})
