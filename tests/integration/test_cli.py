"""The `metascheduler` CLI against a real anvil, as a user drives it: a new wallet, the faucet,
a deposit, jobs submitted from a spec file, followed, topped up, cancelled and watched to the end
(the test plays the oracle and the provider), and the errors a user meets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from typer.testing import CliRunner

from metascheduler import billing
from metascheduler.chain import Market, Terms
from metascheduler.chain.artifacts import REPO_ROOT
from metascheduler.chain.types import Hardware, Prices
from metascheduler.cli import app
from metascheduler.devnet.anvil import dev_account, mine_after
from metascheduler.spec import encode_spec, load_spec
from tests.conftest import ON_ANVIL_AND_HARDHAT, Grid

pytestmark = pytest.mark.chain
HELLO = REPO_ROOT / "examples/specs/hello.yaml"
CREDIT = billing.UNITS_PER_CREDIT
PASSWORD_VAR = "MS_TEST_KEYSTORE_PASSWORD"
#: The development account that pays the test wallets' gas (the session's nodes have 30).
GAS_FUNDER = 29


class User:
    """A user with a fresh keystore, driving the CLI in-process."""

    def __init__(self, grid: Grid, tmp: Path):
        self.grid = grid
        self.keystore = tmp / "wallet.json"
        self.env = {PASSWORD_VAR: "correct horse battery staple"}
        self.runner = CliRunner()
        self.base = [
            "--rpc-url",
            grid.anvil.url,
            "--market",
            grid.deployment.market,
            "--keystore",
            str(self.keystore),
            "--password-env",
            PASSWORD_VAR,
        ]

    def run(self, *args: str, code: int = 0) -> Any:
        res = self.runner.invoke(app, [*self.base, *args], env=self.env)
        assert res.exit_code == code, f"{args}: exit {res.exit_code}\n{res.output}"
        return res

    def json(self, *args: str, code: int = 0) -> dict[str, Any]:
        res = self.run(*args, "--json", code=code)
        obj: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        return obj


def _provider(grid: Grid) -> Market:
    prov = grid.market(dev_account(2))
    prov.register_provider(Hardware(1, 64, 0, 262_144), Prices(60_000, 0, 6_000), ["x86_64"])
    grid.market(grid.admin).approve_provider(dev_account(2).address)
    return prov


def _place(grid: Grid, job_id: int, max_price: int) -> None:
    spec = load_spec(HELLO)
    terms = Terms.for_spec(encode_spec(spec), spec.cpus, spec.gpus, spec.mem_mb, max_price)
    grid.market(grid.oracle).place_job(job_id, dev_account(2).address, terms)


def _advance(m: Market, seconds: int) -> None:
    mine_after(m.w3, seconds)


@pytest.fixture
def user(grid: Grid, tmp_path: Path) -> User:
    """A fresh wallet in a keystore. Its KDF is light (pbkdf2, 1,000 rounds) so that the many
    commands below stay fast: the default scrypt costs about 2 s per command. `wallet create`
    itself, with the default KDF, is tested in the lifecycle test."""
    u = User(grid, tmp_path)
    acct = Account.create()
    light = Account.encrypt(acct.key, u.env[PASSWORD_VAR], kdf="pbkdf2", iterations=1_000)
    u.keystore.write_text(json.dumps(light))
    u.address = acct.address  # type: ignore[attr-defined]
    # Gas money, sent as any wallet would (no node-specific method sets a balance).
    funder = grid.market(dev_account(GAS_FUNDER)).sender_or_fail()
    funder.transact(acct.address, b"", "gas money for the test wallet", value=10**18)
    return u


@ON_ANVIL_AND_HARDHAT
def test_wallet_credits_and_a_job_lifecycle(grid: Grid, user: User) -> None:
    _provider(grid)
    w3 = grid.market().w3
    me = user.address  # type: ignore[attr-defined]
    assert user.json("wallet", "address")["address"] == me
    created = user.json("--keystore", str(user.keystore.with_name("new.json")), "wallet", "create")
    new = user.keystore.with_name("new.json")
    assert oct(new.stat().st_mode & 0o777) == "0o600"
    stored = json.loads(new.read_text())
    assert stored["address"].lower() == created["address"][2:].lower() and "crypto" in stored
    assert created["address"] != me and created["keystore"] == str(new)
    user.run("--keystore", str(new), "wallet", "create", code=2)  # never overwrites
    assert "correct horse" not in user.run("wallet", "address").output

    assert user.json("credits", "faucet")["amount"] == 1_000 * CREDIT
    dep = user.json("credits", "deposit", "100")
    assert dep["method"] == "permit" and dep["amount"] == 100 * CREDIT
    bal = user.json("credits", "balance")
    assert (bal["wallet"], bal["market"]) == (900 * CREDIT, 100 * CREDIT)
    assert "100 credits" in user.run("credits", "balance").output

    sub = user.json("job", "submit", str(HELLO), "--escrow", "10", "--max-price", "1.5")
    job = sub["job_id"]
    assert (sub["escrow"], sub["max_price_per_minute"], sub["cpus"]) == (10 * CREDIT, 1_500_000, 1)
    st = user.json("job", "status", str(job))
    assert st["state"] == st["status"]  # "state": the earlier key, kept
    assert (st["status"], st["escrow"], st["spent"], st["customer"]) == (
        "PENDING",
        10 * CREDIT,
        0,
        me,
    )

    assert user.json("job", "top-up", str(job), "2.5")["escrow"] == 12_500_000
    assert user.json("credits", "balance")["market"] == 87_500_000

    other = user.json("job", "submit", str(HELLO), "--escrow", "3", "--max-price", "1")["job_id"]
    listed = user.json("job", "list")["jobs"]
    assert [j["job_id"] for j in listed] == [job, other]
    cancelled = user.json("job", "cancel", str(other))
    assert cancelled["status"] == "CANCELLED" and cancelled["refunded"] == 3 * CREDIT
    assert [j["job_id"] for j in user.json("job", "list", "--status", "cancelled")["jobs"]] == [
        other
    ]
    assert [j["job_id"] for j in user.json("job", "list", "--state", "PENDING")["jobs"]] == [job]

    # Running: the credits spent so far follow chain time.
    _place(grid, job, 1_500_000)
    prov = grid.market(dev_account(2))
    prov.accept_job(job)
    prov.start_job(job)
    _advance(prov, 90)
    st = user.json("job", "status", str(job))
    price = st["price_per_minute"]
    assert st["status"] == "RUNNING" and price == 60_000 + 6_000 * 256 // 1024
    assert st["spent"] == billing.cost(price=price, elapsed_s=90, escrow=12_500_000)
    assert st["funded_until"] == st["since"] + billing.funded_seconds(
        escrow=12_500_000, price=price
    )
    assert "RUNNING" in user.run("job", "status", str(job)).output

    prov.complete_job(job, 0)
    hist = user.json("job", "history", str(job))["timeline"]
    assert [s["event"] for s in hist] == [
        "JobRequested",
        "JobToppedUp",
        "JobPlaced",
        "JobStatusChanged",
        "JobStatusChanged",
        "JobEnded",
    ]
    assert hist[-1]["to_status"] == hist[-1]["to_state"] == "FINISHED"  # both keys
    assert hist[1]["moved"] == {"customer_to_escrow": 2_500_000}
    assert "FINISHED" in user.run("job", "history", str(job)).output
    # The human watch of an ended job: its last state once, then a clean exit.
    watched = user.run("job", "watch", str(job), "--timeout", "30").output
    assert "FINISHED" in watched and "RUNNING" not in watched

    user.json("credits", "withdraw", "50")
    bal = user.json("credits", "balance")
    assert bal["wallet"] == 950 * CREDIT
    assert user.json("audit", "all")["ok"] is True
    assert "billed by the rules" in user.run("audit", "all").output  # the human report
    assert w3.eth.get_transaction_count(me) > 0


def test_errors_say_what_failed_and_send_nothing(grid: Grid, user: User, tmp_path: Path) -> None:
    me = user.address  # type: ignore[attr-defined]
    w3 = grid.market().w3
    user.run("credits", "faucet")
    user.run("credits", "deposit", "20")
    nonce = w3.eth.get_transaction_count(me)

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nresources: {cpus_per_task: 0, colour: red}\n")
    res = user.run("job", "submit", str(bad), "--escrow", "1", "--max-price", "1", code=2)
    assert "resources.cpus_per_task" in res.output and "colour" in res.output
    err = user.json("job", "submit", str(bad), "--escrow", "1", "--max-price", "1", code=2)
    assert err["ok"] is False and err["kind"] == "invalid-spec"

    res = user.run("job", "submit", str(HELLO), "--escrow", "50", "--max-price", "1", code=1)
    assert "30 credits are missing" in res.output
    assert "credits deposit 30" in res.output
    err = user.json("credits", "deposit", "5000", code=1)
    assert err["kind"] == "insufficient-credits" and "4020 credits are missing" in err["error"]
    err = user.json("job", "top-up", "1", "1", code=1)
    assert err["kind"] == "not-found" and "job 1 does not exist" in err["error"]
    res = user.run("job", "status", "99", code=1)
    assert "job 99 does not exist" in res.output
    assert "job 99 does not exist" in user.run("job", "watch", "99", code=1).output
    res = user.run("job", "submit", str(HELLO), "--escrow", "ten", "--max-price", "1", code=2)
    assert "'ten' is not an amount of credits" in res.output
    res = user.run("job", "list", "--status", "sleeping", code=2)
    assert "unknown status 'sleeping'" in res.output
    # A mistyped address is refused in words before anything is read (it was a traceback).
    for args in (
        ("credits", "balance", "--account", "xyz"),
        ("provider", "status", "0x1234"),
        ("audit", "account", "0x90f79bf6eb2c4f870365e785982e1f101e93B906"),  # bad checksum
    ):
        err = user.json(*args, code=2)
        assert err["kind"] == "usage" and "is not an address" in err["error"], args
    assert w3.eth.get_transaction_count(me) == nonce  # nothing was sent

    job = user.json("job", "submit", str(HELLO), "--escrow", "1", "--max-price", "1")["job_id"]
    user.run("job", "cancel", str(job))
    nonce = w3.eth.get_transaction_count(me)
    err = user.json("job", "cancel", str(job), code=1)
    assert err["kind"] == "revert" and "CANCELLED" in err["error"]
    assert w3.eth.get_transaction_count(me) == nonce  # the estimate caught the revert

    res = CliRunner().invoke(
        app,
        [
            "--rpc-url",
            "http://127.0.0.1:9",
            "--market",
            grid.deployment.market,
            "job",
            "status",
            "1",
        ],
    )
    assert res.exit_code == 3 and "did not answer" in res.output
    res = CliRunner().invoke(app, ["--rpc-url", grid.anvil.url, "job", "status", "1"])
    assert res.exit_code == 2 and "MS_MARKET_ADDRESS" in res.output
    res = user.run("--from-block", "-3", "job", "list", code=2)  # refused by the parser
    assert "--from-block" in res.output
    err = user.json("--from-block", "99999999", "job", "list", "--all", code=1)
    assert "from block 99999999 is not on the chain" in err["error"]


def test_a_top_up_after_the_escrow_ran_out_is_refused_in_words(grid: Grid, user: User) -> None:
    """Its escrow spent, a running job is expirable: `job top-up` says so and moves nothing,
    rather than letting a small top-up pay for the run past the escrow."""
    prov = _provider(grid)
    user.run("credits", "faucet")
    user.run("credits", "deposit", "10")
    job = user.json("job", "submit", str(HELLO), "--escrow", "1", "--max-price", "1")["job_id"]
    _place(grid, job, CREDIT)
    prov.accept_job(job)
    prov.start_job(job)
    until = user.json("job", "status", str(job))["funded_until"]
    _advance(prov, until - user.json("job", "status", str(job))["since"] + 10)
    err = user.json("job", "top-up", str(job), "0.1", code=1)
    assert err["ok"] is False and err["kind"] == "revert"
    assert f"job {job} cannot be topped up: its escrow ran out at t={until}" in err["error"]
    assert "submit a new job" in err["error"]
    assert "will end OUT_OF_CREDITS" in user.run("job", "top-up", str(job), "0.1", code=1).output
    st = user.json("job", "status", str(job))
    assert (st["status"], st["escrow"]) == ("RUNNING", CREDIT)
    assert user.json("credits", "balance")["market"] == 9 * CREDIT


def test_provider_register_and_status_with_a_key_from_the_environment(grid: Grid) -> None:
    env = {"MY_PROVIDER_KEY": dev_account(7).key.hex()}
    base = [
        "--rpc-url",
        grid.anvil.url,
        "--market",
        grid.deployment.market,
        "--key-env",
        "MY_PROVIDER_KEY",
    ]
    r = CliRunner().invoke(
        app,
        [
            *base,
            "provider",
            "register",
            "--cpus",
            "32",
            "--mem-mb",
            "65536",
            "--cpu-price",
            "0.01",
            "--label",
            "x86_64",
            "--label",
            "slurm",
            "--json",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert dev_account(7).key.hex() not in r.output
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["status"] == "REGISTERED" and info["labels"] == ["x86_64", "slurm"]
    assert info["prices"]["cpu"] == 10_000
    r = CliRunner().invoke(app, [*base, "provider", "status", dev_account(7).address], env=env)
    assert r.exit_code == 0 and "32 CPUs" in r.output


def test_watch_follows_a_job_to_its_end(grid: Grid, user: User) -> None:
    """`job watch --json` in a subprocess, read line by line; the test moves the job on each time
    the watcher has reported the state before, so no step depends on timing."""
    prov = _provider(grid)
    user.run("credits", "faucet")
    user.run("credits", "deposit", "10")
    job = user.json("job", "submit", str(HELLO), "--escrow", "5", "--max-price", "1")["job_id"]
    cmd = [
        sys.executable,
        "-m",
        "metascheduler.cli",
        *user.base,
        "job",
        "watch",
        str(job),
        "--poll",
        "0.05",
        "--json",
    ]
    env = {**os.environ, **user.env}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    seen: list[dict[str, Any]] = []

    def next_line() -> dict[str, Any]:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, f"watch exited early: {proc.stderr.read()}"  # type: ignore[union-attr]
        seen.append(json.loads(line))
        return seen[-1]

    try:
        assert next_line()["state"] == "PENDING"
        _place(grid, job, CREDIT)
        assert next_line()["state"] == "META_SCHEDULED"
        prov.accept_job(job)
        assert next_line()["state"] == "SCHEDULED"
        prov.start_job(job)
        assert next_line()["state"] == "RUNNING"
        _advance(prov, 120)
        running = next_line()
        assert running["state"] == "RUNNING" and running["spent"] > 0
        receipt = prov.complete_job(job, 0)
        end = next_line()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert end["state"] == "FINISHED" and end["exit_code"] == 0
    assert end["spent"] == end["paid"] + end["fee"] and end["spent"] >= running["spent"]
    assert end["block"] >= receipt["blockNumber"]
    assert proc.stdout.read() == ""  # the terminal state was the last line


def test_sdk_refuses_a_mistyped_address_in_words(grid: Grid) -> None:
    from metascheduler.client import Client
    from metascheduler.client.errors import ClientError

    client = Client.connect(grid.anvil.url, grid.deployment.market, None)
    good = dev_account(3).address
    with pytest.raises(ClientError, match="'0x1234' is not an address"):
        client.balance("0x1234")
    typo = good[:-1] + ("B" if good[-1] != "B" else "C")
    with pytest.raises(ClientError, match="is not an address"):
        client.provider(typo)
    assert client.balance(good.lower()).account == good  # one case: no checksum to check
