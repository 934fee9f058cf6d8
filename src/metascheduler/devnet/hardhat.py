"""Starting and stopping Hardhat Network (`hardhat node`, from the repo's node_modules): a second
local EVM node beside anvil, so that the chain layer is tried against another node's JSON-RPC
(its mining, logs, errors and timestamps), not only anvil's.

Its settings are the repo's hardhat.config.js: the hardfork forge compiles for, chain id 31337
and the development mnemonic anvil uses, so `dev_account(i)` is funded on both nodes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import requests

from metascheduler.chain.artifacts import REPO_ROOT
from metascheduler.devnet.anvil import LocalNode, free_port, npm_binary

#: The first word of Hardhat Network's `web3_clientVersion`.
CLIENT_PREFIX = "HardhatNetwork/"


def hardhat_binary() -> str:
    return npm_binary("hardhat", "it installs it from npm")


def _answers(url: str) -> bool:
    try:
        reply = requests.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "web3_clientVersion", "params": []},
            timeout=1,
        )
        return str(reply.json().get("result", "")).startswith(CLIENT_PREFIX)
    except (requests.RequestException, ValueError):
        return False


def start_hardhat(
    *,
    port: int | None = None,
    accounts: int = 20,
    log_path: Path | None = None,
    timeout_s: float = 60.0,
) -> LocalNode:
    """Starts `hardhat node` on 127.0.0.1 and waits until it answers JSON-RPC (Node takes a few
    seconds to load Hardhat). Blocks are mined on each transaction, as anvil's are by default."""
    port = port or free_port()
    args = [hardhat_binary(), "node", "--hostname", "127.0.0.1", "--port", str(port)]
    env = {
        **os.environ,
        "MS_HARDHAT_ACCOUNTS": str(accounts),
        # Hardhat asks once whether to send telemetry; nobody is there to answer.
        "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",
    }
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    node = LocalNode(port, proc, log_path, args)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"hardhat node exited at start with code {proc.returncode}: {' '.join(args)}"
            )
        if _answers(node.url):
            return node
        time.sleep(0.2)
    node.stop()
    raise RuntimeError(f"hardhat node did not answer on port {port} within {timeout_s} s")
