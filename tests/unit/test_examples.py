"""Every settings file in examples/ loads with its service's settings, and says where the
market lives."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from metascheduler.agent.settings import AgentSettings
from metascheduler.api.settings import ApiSettings
from metascheduler.config import ChainSettings
from metascheduler.oracle.settings import OracleSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SERVICES: dict[str, type[ChainSettings]] = {
    "oracle.toml": OracleSettings,
    "api.toml": ApiSettings,
    "agent-local.toml": AgentSettings,
    "agent-slurm.toml": AgentSettings,
}


@pytest.fixture(autouse=True)
def _no_ms_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("MS_")]:
        monkeypatch.delenv(var)  # the environment would override the files


def test_every_example_has_its_service() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == sorted(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_example_loads(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    settings = SERVICES[name].load(EXAMPLES / name)
    assert settings.market_address and settings.rpc_url.startswith("http")
    # Each file explains its fields; the deployment file is offered in place of the address.
    assert text.count("#") >= 10 and '# deployment = "deployment.json"' in text


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_example_with_a_deployment_file(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uncommenting `deployment` (and dropping the address it replaces) gives the file's market
    and block."""
    dep = {
        "format": "metascheduler-deployment/1",
        "chain_id": 31337,
        "market": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "credit": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        "block": 7,
        "admin": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "oracle": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "market_code_hash": "0x" + "00" * 32,
        "credit_code_hash": "0x" + "00" * 32,
    }
    (tmp_path / "deployment.json").write_text(json.dumps(dep))
    lines = (EXAMPLES / name).read_text().splitlines()
    edited = [
        'deployment = "deployment.json"' if line.startswith('# deployment = "') else line
        for line in lines
        if not line.startswith(("market_address", "start_block"))
    ]
    path = tmp_path / name
    path.write_text("\n".join(edited) + "\n")
    monkeypatch.chdir(tmp_path)  # the file's path is relative to the working folder
    settings = SERVICES[name].load(path)
    assert settings.market_address == dep["market"]
    assert getattr(settings, "start_block", dep["block"]) == dep["block"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_example_holds_only_what_its_service_reads(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="metascheduler.config"):
        SERVICES[name].load(EXAMPLES / name)
    assert "not read by" not in caplog.text
