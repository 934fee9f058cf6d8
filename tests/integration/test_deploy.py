"""`metascheduler deploy` against a real node: the contracts, their roles and settings, the
deployment file every command and service then accepts, and the refusals (another chain, a
development key off a devnet, an existing file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak
from typer.testing import CliRunner
from web3 import Web3

from metascheduler import billing
from metascheduler.agent.settings import AgentSettings
from metascheduler.api.service import run_api_command
from metascheduler.api.settings import ApiSettings
from metascheduler.chain import Market
from metascheduler.chain.deployment import load_deployment
from metascheduler.chain.rpc import connect
from metascheduler.cli import EXIT_USAGE, app
from metascheduler.config import SettingsError
from metascheduler.devnet.anvil import dev_account, start_anvil
from metascheduler.oracle.settings import OracleSettings

pytestmark = pytest.mark.chain
KEY_VAR = "MS_TEST_DEPLOYER_KEY"


def _cli(*args: str, env: dict[str, str] | None = None, code: int = 0) -> dict[str, Any]:
    res = CliRunner().invoke(app, [*args, "--json"], env=env or {})
    assert res.exit_code == code, f"{args}: exit {res.exit_code}\n{res.output}"
    obj: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return obj


def _deploy(url: str, out: Path, *extra: str, key_index: int = 0) -> dict[str, Any]:
    env = {KEY_VAR: dev_account(key_index).key.hex()}
    return _cli(
        "deploy", "--rpc-url", url, "--key-env", KEY_VAR, "--out", str(out), *extra, env=env
    )


def test_deploy_writes_the_file_and_sets_roles(evm_node: Any, tmp_path: Path) -> None:
    oracle = dev_account(1).address
    path = tmp_path / "deployment.json"
    res = _deploy(evm_node.url, path, "--oracle", oracle, "--fee-bps", "250")
    w3 = connect(evm_node.url)
    assert res["ok"] and res["chain_id"] == w3.eth.chain_id == 31337
    assert {"market", "credit", "chain_id", "block"} <= res.keys()
    dep = load_deployment(path)
    assert (dep.market, dep.credit, dep.block) == (res["market"], res["credit"], res["block"])
    # The block is the market's deployment block: its code is there, and not one block before.
    market_addr = Web3.to_checksum_address(dep.market)
    assert w3.eth.get_code(market_addr, block_identifier=dep.block)
    assert not w3.eth.get_code(market_addr, block_identifier=dep.block - 1)
    for address, digest in ((dep.market, dep.market_code_hash), (dep.credit, dep.credit_code_hash)):
        code = w3.eth.get_code(Web3.to_checksum_address(address))
        assert "0x" + keccak(bytes(code)).hex() == digest

    market = Market(w3, dep.market)
    admin = dev_account(0).address
    assert dep.admin == admin and dep.oracle == oracle
    assert market.config()["oracle"] == oracle and market.config()["fee_bps"] == 250
    # A fresh market makes spam cost its sender: 0.01 credit a request unless told otherwise.
    assert res["request_fee"] == market.request_fee() == 10_000
    assert market.contract.functions.hasRole(bytes(32), admin).call()
    minter = keccak(b"MINTER_ROLE")
    assert market.credit.functions.hasRole(minter, admin).call()
    assert market.credit.address == dep.credit
    # The CLI refuses a fee above the contract's maximum before deploying anything.
    assert market.contract.functions.MAX_FEE_BPS().call() == billing.MAX_FEE_BPS


def test_deploy_sets_the_request_fee_asked_and_refuses_one_the_contract_cannot_hold(
    evm_node: Any, tmp_path: Path
) -> None:
    free = _deploy(evm_node.url, tmp_path / "free.json", "--request-fee", "0")
    assert free["request_fee"] == 0
    assert Market(connect(evm_node.url), free["market"]).request_fee() == 0
    env = {KEY_VAR: dev_account(0).key.hex()}
    too_high = tmp_path / "too-high.json"
    err = _cli(
        "deploy",
        "--rpc-url",
        evm_node.url,
        "--key-env",
        KEY_VAR,
        "--out",
        str(too_high),
        "--request-fee",
        "17",
        env=env,
        code=2,
    )
    assert "above the contract's limit of 16.777215 credits" in err["error"]
    assert not too_high.exists()  # refused before anything was deployed


def test_every_command_accepts_the_deployment_file(evm_node: Any, tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    dep = _deploy(evm_node.url, path)
    env = {KEY_VAR: dev_account(5).key.hex(), "MS_DEPLOYMENT": str(path)}
    base = ["--rpc-url", evm_node.url, "--key-env", KEY_VAR]
    assert _cli(*base, "credits", "faucet", env=env)["amount"] > 0
    assert _cli(*base, "credits", "deposit", "3", env=env)["amount"] == 3 * 10**6
    assert _cli(*base, "credits", "balance", env=env)["market"] == 3 * 10**6
    assert _cli(*base, "job", "list", "--all", env=env)["jobs"] == []
    audit = _cli("--rpc-url", evm_node.url, "--deployment", str(path), "audit", "all")
    assert audit["ok"] and audit["market"] == dep["market"] and audit["from_block"] == dep["block"]


def test_a_deployment_file_is_refused_on_another_chain(evm_node: Any, tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    _deploy(evm_node.url, path)
    other = tmp_path / "other-chain.json"
    other.write_text(json.dumps({**json.loads(path.read_text()), "chain_id": 8453}))
    err = _cli("--rpc-url", evm_node.url, "--deployment", str(other), "audit", "all", code=2)
    assert err["kind"] == "deployment"
    assert "is for chain id 8453, but the RPC endpoint answers chain id 31337" in err["error"]

    # The services: the settings take the market and its block, the chain is checked at start.
    oracle = OracleSettings.load(None, deployment=other, rpc_url=evm_node.url)
    dep = load_deployment(other)
    assert (oracle.market_address, oracle.start_block) == (dep.market, dep.block)
    with pytest.raises(SettingsError, match="is for chain id 8453"):
        oracle.check_chain(31337)
    agent = AgentSettings.load(None, deployment=path)
    assert agent.start_block == load_deployment(path).block
    assert ApiSettings.load(None, deployment=other).chain_id == 8453


def test_the_api_refuses_a_deployment_of_another_chain(
    evm_node: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "deployment.json"
    _deploy(evm_node.url, path)
    other = tmp_path / "other-chain.json"
    other.write_text(json.dumps({**json.loads(path.read_text()), "chain_id": 8453}))
    monkeypatch.setenv("MS_DEPLOYMENT", str(other))
    monkeypatch.setenv("MS_RPC_URL", evm_node.url)
    monkeypatch.setenv("MS_DATABASE_URL", f"sqlite:///{tmp_path / 'api.db'}")
    assert run_api_command(None) == 2
    assert not (tmp_path / "api.db").exists()  # refused before touching the store


def test_settings_refuse_a_deployment_that_contradicts_them(tmp_path: Path, anvil: Any) -> None:
    path = tmp_path / "deployment.json"
    _deploy(anvil.url, path)
    with pytest.raises(SettingsError, match="differs from the market"):
        OracleSettings.load(None, deployment=path, market_address="0x" + "11" * 20)
    with pytest.raises(SettingsError, match=r"deployment file .* not found"):
        OracleSettings.load(None, deployment=tmp_path / "missing.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"market": 1}')
    err = _cli("--deployment", str(garbage), "audit", "all", code=EXIT_USAGE)
    assert "is not a metascheduler deployment" in err["error"]


def test_deploy_refuses_to_overwrite_a_deployment_file(anvil: Any, tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_text("another deployment's record")
    w3 = connect(anvil.url)
    nonce = w3.eth.get_transaction_count(dev_account(6).address)
    env = {KEY_VAR: dev_account(6).key.hex()}
    err = _cli(
        "deploy", "--rpc-url", anvil.url, "--key-env", KEY_VAR, "--out", str(path), env=env, code=2
    )
    assert "exists; refusing to overwrite" in err["error"]
    assert path.read_text() == "another deployment's record"
    assert w3.eth.get_transaction_count(dev_account(6).address) == nonce  # nothing sent


def test_deploy_refuses_a_development_key_off_a_devnet(tmp_path: Path) -> None:
    with start_anvil(accounts=2, extra=["--chain-id", "8453"]) as chain:
        env = {KEY_VAR: dev_account(0).key.hex()}
        out = tmp_path / "deployment.json"
        err = _cli(
            "deploy",
            "--rpc-url",
            chain.url,
            "--key-env",
            KEY_VAR,
            "--out",
            str(out),
            env=env,
            code=2,
        )
        assert err["kind"] == "key" and "well-known development key" in err["error"]
        assert connect(chain.url).eth.get_transaction_count(dev_account(0).address) == 0
        assert not out.exists()
