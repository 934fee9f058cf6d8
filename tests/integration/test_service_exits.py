"""The oracle and the agent, run as real processes, end with the same exit codes as the CLI for
the same cause: 3 when the chain's RPC does not answer, 2 for a key that cannot be loaded. Their
last words are one line, and never the key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from metascheduler.cli.errors import EXIT_RPC, EXIT_USAGE

#: anvil's first development key: any well-formed key will do, the chain is never reached.
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def closed_port() -> int:
    """A port nothing listens on: bound once to learn a free one, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MS_")}
    env.update(
        MS_RPC_URL=f"http://127.0.0.1:{closed_port()}",
        MS_MARKET_ADDRESS=MARKET,
        MS_PRIVATE_KEY=KEY,
        MS_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
        MS_STATE_DIR=str(tmp_path / "agent"),
        MS_RPC_DEADLINE_S="1",
        MS_RPC_TIMEOUT_S="1",
    )
    env.update(extra)
    return env


SERVICES = ["metascheduler.oracle", "metascheduler.agent"]


def run_service(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def last_words(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert lines, f"no output; stdout: {proc.stdout}"
    return lines[-1]


@pytest.mark.parametrize("module", SERVICES)
def test_an_unreachable_rpc_exits_3_like_the_cli(module: str, tmp_path: Path) -> None:
    proc = run_service(module, service_env(tmp_path))
    assert proc.returncode == EXIT_RPC, proc.stderr[-3000:]
    assert "stopped" in last_words(proc) and "127.0.0.1" in last_words(proc), proc.stderr
    assert KEY[2:] not in proc.stderr + proc.stdout


@pytest.mark.parametrize("module", SERVICES)
def test_an_unusable_key_exits_2_like_the_cli(module: str, tmp_path: Path) -> None:
    bad_key = "0x" + "zz" * 32
    proc = run_service(module, service_env(tmp_path, MS_PRIVATE_KEY=bad_key))
    assert proc.returncode == EXIT_USAGE, proc.stderr[-3000:]
    assert "key" in last_words(proc), proc.stderr
    assert "zz" * 32 not in proc.stderr + proc.stdout
