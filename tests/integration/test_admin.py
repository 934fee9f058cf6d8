"""`metascheduler admin` against a real node, through a deployment file: each command changes
what it says, as the admin (or the minter), and anyone else is refused with the contract's error
in words."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from metascheduler.chain import Market, Terms
from metascheduler.chain.deployment import write_deployment
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import Hardware, Prices
from metascheduler.cli import EXIT_FAILED, app
from metascheduler.commands import APPROVE_PROVIDER
from metascheduler.devnet.anvil import dev_account, mine_after
from metascheduler.spec import encode_spec, load_spec
from tests.integration.test_cli import HELLO

pytestmark = pytest.mark.chain
KEY_VAR = "MS_TEST_ADMIN_KEY"
ADMIN, ORACLE, PROVIDER, CUSTOMER, STRANGER = (dev_account(i) for i in (0, 1, 8, 9, 10))


class Admin:
    """The CLI over one fresh deployment, signing with the key of `dev_account(index)`."""

    def __init__(self, url: str, deployment: Path):
        self.url = url
        self.deployment = deployment

    def run(self, *args: str, key: int = 0, code: int = 0) -> dict[str, Any]:
        env = {KEY_VAR: dev_account(key).key.hex()}
        base = ["--rpc-url", self.url, "--deployment", str(self.deployment), "--key-env", KEY_VAR]
        res = CliRunner().invoke(app, [*base, *args, "--json"], env=env)
        assert res.exit_code == code, f"{args}: exit {res.exit_code}\n{res.output}"
        obj: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        return obj

    def refused(self, *args: str, key: int) -> str:
        err = self.run(*args, key=key, code=EXIT_FAILED)
        assert err["ok"] is False and err["kind"] == "revert"
        return str(err["error"])


@pytest.fixture
def admin(evm_node: Any, tmp_path: Path) -> Admin:
    dep = Market.deploy(connect(evm_node.url), ADMIN, oracle=ORACLE.address)
    return Admin(evm_node.url, write_deployment(dep, tmp_path / "deployment.json"))


def _market(admin: Admin, account: Any = None) -> Market:
    dep = json.loads(admin.deployment.read_text())
    return Market(connect(admin.url), dep["market"], account)


def test_providers_are_approved_banned_and_removed(admin: Admin) -> None:
    who = PROVIDER.address
    _market(admin, PROVIDER).register_provider(Hardware(1, 8, 0, 8192), Prices(1000, 0, 0), [])
    words = admin.refused("admin", "approve-provider", who, key=10)
    assert f"{STRANGER.address} lacks the admin role (DEFAULT_ADMIN_ROLE)" in words
    assert admin.run("admin", "approve-provider", who)["status"] == "APPROVED"
    words = admin.refused("admin", "approve-provider", who, key=0)
    assert f"approving provider {who}: provider {who} has no record in the standing" in words
    assert f"`metascheduler provider status {who}`" in words
    assert admin.run("admin", "ban-provider", who)["status"] == "BANNED"
    assert f"provider {who} is banned" in admin.refused("admin", "remove-provider", who, key=0)

    other = CUSTOMER.address
    _market(admin, CUSTOMER).register_provider(Hardware(1, 8, 0, 8192), Prices(1000, 0, 0), [])
    assert admin.run("admin", "remove-provider", other)["status"] == "NONE"


def test_the_command_the_agent_names_approves_a_provider(admin: Admin) -> None:
    _market(admin, PROVIDER).register_provider(Hardware(1, 8, 0, 8192), Prices(1000, 0, 0), [])
    args = APPROVE_PROVIDER.format(provider=PROVIDER.address).split()
    assert args[0] == "metascheduler"
    assert admin.run(*args[1:])["status"] == "APPROVED"


def test_oracle_fee_timeouts_and_pause(admin: Admin) -> None:
    cfg = admin.run("admin", "set-fee", "300")
    assert cfg["fee_bps"] == 300 and cfg["tx"].startswith("0x")
    words = admin.refused("admin", "set-fee", "5000", key=0)
    assert "fee 5000 bps is above the maximum of 2000 bps" in words
    cfg = admin.run("admin", "set-timeouts", "--accept", "30")
    assert (cfg["accept_timeout_s"], cfg["start_timeout_s"]) == (30, 3600)
    cfg = admin.run("admin", "set-oracle", STRANGER.address)
    assert cfg["oracle"] == STRANGER.address
    assert "lacks the admin role" in admin.refused("admin", "pause", key=1)

    assert admin.run("admin", "pause")["paused"] is True
    customer = _market(admin, CUSTOMER)
    customer.faucet()
    customer.approve(10**6)
    customer.deposit(10**6)
    with pytest.raises(Exception, match="new job requests are paused by the admin"):
        customer.request_job(b"x", 1, 0, 256, max_price_per_minute=1000, escrow=10**6)
    assert admin.run("admin", "unpause")["paused"] is False
    assert customer.request_job(b"x", 1, 0, 256, max_price_per_minute=1000, escrow=10**6) == 1


def test_minting_and_fees(admin: Admin) -> None:
    minted = admin.run("admin", "mint", "50", "--to", CUSTOMER.address)
    assert minted["amount"] == 50 * 10**6 and minted["wallet"] == 50 * 10**6
    words = admin.refused("admin", "mint", "50", key=10)
    assert f"{STRANGER.address} lacks the minter role (MINTER_ROLE)" in words
    words = admin.refused("admin", "withdraw-fees", "1", key=0)
    assert "has 0 credits in the market but needs 1 credits" in words

    # One job at a 10% fee, run for a minute, earns the market fees to withdraw.
    admin.run("admin", "set-fee", "1000")
    admin.run("admin", "approve-provider", PROVIDER.address, code=EXIT_FAILED)  # not registered
    prov = _market(admin, PROVIDER)
    prov.register_provider(Hardware(1, 8, 0, 8192), Prices(600_000, 0, 0), [])
    admin.run("admin", "approve-provider", PROVIDER.address)
    customer = _market(admin, CUSTOMER)
    customer.approve(50 * 10**6)
    customer.deposit(50 * 10**6)
    spec = load_spec(HELLO)
    data = encode_spec(spec)
    job = customer.request_job(
        data, spec.cpus, spec.gpus, spec.mem_mb, max_price_per_minute=10**6, escrow=10 * 10**6
    )
    terms = Terms.for_spec(data, spec.cpus, spec.gpus, spec.mem_mb, 10**6)
    _market(admin, ORACLE).place_job(job, PROVIDER.address, terms)
    prov.accept_job(job)
    prov.start_job(job)
    mine_after(prov.w3, 60)
    prov.complete_job(job, 0)
    fees = customer.accrued_fees()
    assert fees > 0
    out = admin.run("admin", "withdraw-fees", "0.01", "--to", STRANGER.address)
    assert out["accrued_fees"] == fees - 10_000 and out["to"] == STRANGER.address
    assert customer.wallet_balance(STRANGER.address) == 10_000


def test_request_fee_and_surplus_sweep(admin: Admin) -> None:
    admin.run("admin", "mint", "5", "--to", CUSTOMER.address)
    customer = _market(admin, CUSTOMER)
    out = admin.run("admin", "set-request-fee", "0.01")
    assert out["request_fee"] == 10_000 and customer.request_fee() == 10_000
    words = admin.refused("admin", "set-request-fee", "17", key=0)
    assert "above the maximum" in words
    words = admin.refused("admin", "sweep-surplus", STRANGER.address, key=0)
    assert "above zero" in words  # nothing was sent around deposit() yet
    data = customer.credit.encode_abi("transfer", args=[customer.address, 3 * 10**6])
    customer.sender_or_fail().transact(customer.credit.address, data, "sending credits by mistake")
    words = admin.refused("admin", "sweep-surplus", CUSTOMER.address, key=10)
    assert "lacks the admin role" in words
    out = admin.run("admin", "sweep-surplus", CUSTOMER.address)
    assert out["amount"] == 3 * 10**6 and out["to"] == CUSTOMER.address
    assert customer.wallet_balance(CUSTOMER.address) == 5 * 10**6
