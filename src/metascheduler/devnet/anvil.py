"""Starting and stopping a local anvil chain (from the repo's node_modules)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from metascheduler.chain.artifacts import REPO_ROOT

#: anvil's well-known development mnemonic. Its keys are public: never use them off a devnet.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEVNET_CHAIN_IDS = frozenset({31337, 1337})


def npm_binary(name: str, installs: str) -> str:
    """A command `make deps` installs from npm: the repository's copy first, else one on PATH.
    ``installs`` says what brings it, for the error."""
    local = REPO_ROOT / "node_modules" / ".bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name} not found: run `make deps` ({installs})")


def anvil_binary() -> str:
    return npm_binary("anvil", "it installs Foundry from npm into node_modules")


@cache
def dev_account(index: int) -> LocalAccount:
    """The `index`-th account of anvil's development mnemonic."""
    Account.enable_unaudited_hdwallet_features()
    acct: LocalAccount = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return acct


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalNode:
    """A running local chain node: anvil, or Hardhat Network (devnet/hardhat.py). Use as a
    context manager, or call stop()."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    args: list[str] = field(default_factory=list)
    cache_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.cache_dir is not None:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def __enter__(self) -> LocalNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


Anvil = LocalNode


def node_rpc(w3: Any, method: str, *params: Any) -> Any:
    """A local node's test method (`evm_mine`, `evm_setNextBlockTimestamp`, ...), anvil's or
    Hardhat's; a refusal raises, so a test cannot go on from a state it did not get (Hardhat,
    unlike anvil, refuses a next block with the same timestamp as the latest)."""
    reply = w3.provider.make_request(method, list(params))
    if reply.get("error") is not None:
        raise RuntimeError(f"{method}{list(params)} refused: {reply['error']}")
    return reply.get("result")


def next_block_after(w3: Any, seconds: int) -> int:
    """Sets the next block's time to exactly `seconds` after the latest block's; returns it.

    `evm_increaseTime` adds to the wall clock, so a test that takes a second between two blocks
    would see one second more than it asked for; this pins the next block's time instead."""
    at = int(w3.eth.get_block("latest")["timestamp"]) + seconds
    node_rpc(w3, "evm_setNextBlockTimestamp", at)
    return at


def mine_after(w3: Any, seconds: int) -> int:
    """Mines one block exactly `seconds` after the latest block and returns its timestamp."""
    at = next_block_after(w3, seconds)
    node_rpc(w3, "evm_mine")
    return at


def start_anvil(
    *,
    port: int | None = None,
    block_time: float | None = None,
    accounts: int = 20,
    gas_limit: int | None = None,
    log_path: Path | None = None,
    extra: list[str] | None = None,
    timeout_s: float = 20.0,
) -> Anvil:
    """Starts anvil on 127.0.0.1 and waits until it answers JSON-RPC.

    anvil keeps the state of its last 500 blocks in memory and, by default, writes up to 3,600
    older ones to disk as JSON, each a full copy of the chain's state. A long-lived test chain
    that deploys afresh for every test grows its state with each deployment, so those copies
    reach several GB within one test run, and anvil leaves them behind when it is killed. So no
    state goes to disk (a read more than 500 blocks back fails with BlockOutOfRangeError, which
    the audit tolerates), and anvil's cache lives in a directory of ours that stop() removes."""
    port = port or free_port()
    cache_dir = Path(tempfile.mkdtemp(prefix="anvil-cache-"))
    args = [
        anvil_binary(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--accounts",
        str(accounts),
        "--balance",
        "1000000",
        "--max-persisted-states",
        "0",
        "--cache-path",
        str(cache_dir),
    ]
    if block_time:
        args += ["--block-time", str(block_time)]
    if gas_limit:
        args += ["--gas-limit", str(gas_limit)]
    args += extra or []
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    anvil = Anvil(port, proc, log_path, args, cache_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"anvil exited at start with code {proc.returncode}: {' '.join(args)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return anvil
        except OSError:
            time.sleep(0.05)
    anvil.stop()
    raise RuntimeError(f"anvil did not answer on port {port} within {timeout_s} s")
