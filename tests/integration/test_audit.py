"""The audit on a real anvil: clean on an honest history of every kind of ending, and failing,
naming the job and the block, when the contract billed at a price it was not placed at (a stored
price corrupted with anvil_setStorageAt stands for a cheating provider), when credits appear
that no event accounts for, and when an account's stored balance leaves the sum of its events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak
from typer.testing import CliRunner
from web3.types import RPCEndpoint

from metascheduler import billing
from metascheduler.audit import AuditError, audit_account, audit_all, audit_job
from metascheduler.chain import JobStatus, Market, Terms
from metascheduler.chain.types import Hardware, Prices
from metascheduler.cli import app
from metascheduler.devnet.anvil import dev_account, next_block_after
from tests.conftest import ON_ANVIL_AND_HARDHAT, Grid

pytestmark = pytest.mark.chain
CREDIT = billing.UNITS_PER_CREDIT
SPEC = b'{"command":["true"],"name":"audit"}'
CPUS, GPUS, MEM = 2, 0, 2048
DIGEST = keccak(b"encrypted outputs and final log chain")
PRICES = Prices(10_000, 0, 1_000)  # 0.02 + 0.002 credits/min for the job above


class World:
    def __init__(self, grid: Grid):
        self.grid = grid
        self.admin = grid.market(grid.admin)
        self.oracle = grid.market(grid.oracle)
        self.prov = grid.market(dev_account(2))
        self.cust = grid.market(dev_account(3))
        self.prov_addr = dev_account(2).address
        self.prov.register_provider(Hardware(1, 64, 0, 262_144), PRICES, ["x86_64"])
        self.admin.approve_provider(self.prov_addr)
        self.admin.mint(dev_account(3).address, 1_000 * CREDIT)
        self.cust.approve(2**256 - 1)
        self.cust.deposit(500 * CREDIT)

    def request(self, escrow: int, max_price: int = CREDIT) -> int:
        return self.cust.request_job(
            SPEC, CPUS, GPUS, MEM, max_price_per_minute=max_price, escrow=escrow
        )

    def place(self, job: int, max_price: int = CREDIT) -> None:
        terms = Terms.for_spec(SPEC, CPUS, GPUS, MEM, max_price)
        self.oracle.place_job(job, self.prov_addr, terms)

    def run(self, job: int) -> None:
        self.place(job)
        self.prov.accept_job(job)
        self.prov.start_job(job)

    def send_to_market(self, amount: int) -> None:
        data = self.cust.credit.encode_abi("transfer", args=[self.cust.address, amount])
        self.cust.sender_or_fail().transact(self.cust.credit.address, data, "sending credits")

    def advance(self, seconds: int) -> None:
        """The next transaction's block comes exactly `seconds` after the latest one."""
        next_block_after(self.cust.w3, seconds)


@ON_ANVIL_AND_HARDHAT
def test_audit_passes_on_an_honest_history(grid: Grid) -> None:
    w = World(grid)
    w.admin.set_fee(250)

    finished = w.request(10 * CREDIT)
    w.run(finished)
    w.advance(125)
    w.prov.complete_job(finished, 0)

    failed = w.request(10 * CREDIT)
    w.run(failed)
    w.advance(30)
    w.prov.complete_job(failed, 3, DIGEST)

    cancelled_pending = w.request(5 * CREDIT)
    w.cust.cancel_job(cancelled_pending)

    w.admin.set_fee(1_000)  # jobs placed from now on pay 10%; those placed before keep 2.5%

    cancelled_running = w.request(10 * CREDIT)
    w.run(cancelled_running)
    w.advance(61)
    w.cust.cancel_job(cancelled_running)

    dry = w.request(50_000)  # 0.05 credits at 0.022/min: about 137 s of running
    w.run(dry)
    w.advance(billing.funded_seconds(escrow=50_000, price=w.cust.get_job(dry).price_per_minute))
    assert not w.cust.skipped(w.cust.expire_jobs([dry]))

    topped = w.request(20_000)
    w.run(topped)
    w.cust.top_up(topped, 30_000)
    w.advance(100)
    w.prov.complete_job(topped, 0)

    silent = w.request(10 * CREDIT)
    w.run(silent)
    started = w.cust.get_job(silent).since
    w.advance(300)
    # Its provider's last heartbeat was two minutes in: billed up to it.
    assert not w.oracle.skipped(w.oracle.fail_jobs([(silent, started + 120)]))

    w.admin.set_request_fee(1_000)
    cancelled_with_fee = w.request(5 * CREDIT)
    w.cust.cancel_job(cancelled_with_fee)
    w.admin.set_request_fee(0)

    refused = w.request(10 * CREDIT)
    w.place(refused)
    w.prov.refuse_job(refused, "maintenance")
    w.admin.set_fee(500)
    w.run(refused)
    w.advance(45)
    w.prov.complete_job(refused, 0)

    live = w.request(10 * CREDIT)
    w.run(live)
    w.advance(20)
    w.prov.withdraw(w.prov.balance_of(w.prov_addr) // 2)
    fees = w.admin.contract.encode_abi("withdrawFees", args=[dev_account(5).address, 1])
    w.admin.sender_or_fail().transact(w.admin.address, fees, "withdrawing fees")
    # Credits sent to the market by a plain transfer (not a deposit): swept back to their
    # sender, then some more sent and left there.
    w.send_to_market(3 * CREDIT)
    w.admin.sweep_surplus(dev_account(3).address)
    w.send_to_market(2 * CREDIT)

    steps: list[str] = []
    report = audit_all(w.cust, progress=steps.append)
    assert report.ok, [d.to_json() for d in report.all_discrepancies]
    assert [s.split(" ")[0] for s in steps] == ["reading"] * 5
    assert "logs" in steps[0] and "10 jobs" in steps[2] and "balances" in steps[3]
    assert "transfers" in steps[4]
    states = {j.job_id: j.status for j in report.jobs}
    assert states == {
        finished: "FINISHED",
        failed: "FAILED",
        cancelled_pending: "CANCELLED",
        cancelled_running: "CANCELLED",
        dry: "OUT_OF_CREDITS",
        topped: "FINISHED",
        silent: "FAILED",
        refused: "FINISHED",
        live: "RUNNING",
        cancelled_with_fee: "CANCELLED",
    }
    assert report.surplus == 2 * CREDIT
    assert report.token_held == (
        report.balances_total + report.live_escrow + report.accrued_fees + report.surplus
    )
    assert report.live_escrow == 10 * CREDIT

    by_id = {j.job_id: j for j in report.jobs}
    f = by_id[finished]
    assert f.billed_seconds == 125
    assert f.fee_bps == 250 and f.expected == f.actual
    price = billing.price_per_minute(CPUS, GPUS, MEM, PRICES.cpu, PRICES.gpu, PRICES.gb)
    assert f.expected is not None and f.expected.cost == price * 125 // 60
    assert by_id[cancelled_running].fee_bps == 1_000
    assert by_id[refused].fee_bps == 500  # the fee at its second placement, not its first
    silent_bill, dry_bill = by_id[silent].actual, by_id[dry].actual
    assert silent_bill is not None and silent_bill.cost == price * 120 // 60
    assert silent_bill.refunded == 10 * CREDIT - silent_bill.cost
    assert by_id[silent].expected == silent_bill
    assert by_id[cancelled_with_fee].request_fee == 1_000
    assert by_id[failed].result_digest == "0x" + DIGEST.hex()
    assert by_id[finished].result_digest is None
    assert dry_bill is not None and dry_bill.cost == 50_000
    assert by_id[topped].escrow == 50_000 and by_id[topped].top_ups == 30_000
    events = [s.event for s in audit_job(w.cust, refused).steps]
    assert events == [
        "JobRequested",
        "JobPlaced",
        "JobReturned",
        "JobPlaced",
        "JobStatusChanged",
        "JobStatusChanged",
        "JobEnded",
    ]


#: JobMarket's storage, as its layout comment documents it (`forge inspect JobMarket
#: storageLayout`): the `_jobs` mapping is slot 9; a job's first word packs termsTag (128 bits) |
#: providerId (32) | status (8) | since (32) | pricePerMinute (40) | rulesId (16), from the low
#: bits up.
JOBS_SLOT = 10
PRICE_SHIFT, PRICE_BITS = 128 + 32 + 8 + 32, 40


def _job_word(m: Market, job_id: int) -> tuple[int, int]:
    """The slot of a job's first word and its value, checked against getJob so that a changed
    layout fails here rather than corrupting the wrong field."""
    slot = int.from_bytes(keccak(encode(["uint256", "uint256"], [job_id, JOBS_SLOT])), "big")
    word = int.from_bytes(m.w3.eth.get_storage_at(m.address, slot), "big")
    view = m.get_job(job_id)
    fields = (
        word & (2**128 - 1),
        word >> 160 & 0xFF,
        word >> 168 & (2**32 - 1),
        word >> PRICE_SHIFT & (2**PRICE_BITS - 1),
    )
    assert fields == (
        int.from_bytes(view.terms_tag, "big"),
        int(view.status),
        view.since,
        view.price_per_minute,
    ), "JobMarket's storage layout changed: update JOBS_SLOT and the offsets"
    return slot, word


def _corrupt_price(m: Market, job_id: int, new_price: int) -> None:
    slot, word = _job_word(m, job_id)
    mask = (2**PRICE_BITS - 1) << PRICE_SHIFT
    word = (word & ~mask) | (new_price << PRICE_SHIFT)
    m.w3.provider.make_request(
        RPCEndpoint("anvil_setStorageAt"),
        [m.address, hex(slot), "0x" + word.to_bytes(32, "big").hex()],
    )


def test_audit_names_the_job_and_block_of_a_wrong_bill(grid: Grid) -> None:
    w = World(grid)
    w.admin.set_fee(300)
    honest = w.request(10 * CREDIT)
    w.run(honest)
    w.advance(60)
    w.prov.complete_job(honest, 0)

    cheat = w.request(10 * CREDIT)
    w.run(cheat)
    placed = w.cust.get_job(cheat).price_per_minute
    _corrupt_price(w.cust, cheat, placed * 3)
    assert w.cust.get_job(cheat).price_per_minute == placed * 3

    # Still running: its stored record already disagrees with its JobPlaced event.
    live = audit_job(w.cust, cheat)
    assert not live.ok and {d.check for d in live.discrepancies} == {"stored-state"}
    assert "price" in live.discrepancies[0].message

    w.advance(120)
    receipt = w.prov.complete_job(cheat, 0)
    report = audit_all(w.cust)
    assert not report.ok
    bad = [d for d in report.all_discrepancies if d.check == "bill"]
    assert len(bad) == 1
    assert bad[0].job_id == cheat and bad[0].block == receipt["blockNumber"]
    assert {j.job_id for j in report.jobs if not j.ok} == {cheat}
    # The contract's own accounting still adds up: only the bill betrays the cheat.
    assert not [d for d in report.all_discrepancies if d.check == "conservation"]

    out = CliRunner().invoke(
        app, ["--rpc-url", grid.anvil.url, "--market", w.cust.address, "audit", "all", "--json"]
    )
    assert out.exit_code == 1, out.output
    verdict = json.loads(out.output.strip().splitlines()[-1])
    assert verdict["ok"] is False and verdict["bad_jobs"] == [cheat]
    out = CliRunner().invoke(
        app, ["--rpc-url", grid.anvil.url, "--market", w.cust.address, "audit", "job", str(honest)]
    )
    assert out.exit_code == 0, out.output
    assert "OK" in out.output


def test_audit_counts_plain_transfers_as_surplus_until_swept(grid: Grid) -> None:
    """Credits minted or transferred straight to the market (not deposited) are held for
    nobody: the audit counts them as surplus, and the admin's sweep takes them out again."""
    w = World(grid)
    job = w.request(CREDIT)
    w.cust.cancel_job(job)
    assert audit_all(w.cust).ok
    w.admin.mint(w.cust.address, 7)  # tokens sent to the market around deposit()
    report = audit_all(w.cust)
    assert report.ok, [d.to_json() for d in report.all_discrepancies]
    assert report.surplus == 7
    w.admin.sweep_surplus(dev_account(5).address)
    report = audit_all(w.cust)
    assert report.ok and report.surplus == 0
    assert w.cust.wallet_balance(dev_account(5).address) == 7


def test_audit_flags_credits_no_event_accounts_for(grid: Grid) -> None:
    w = World(grid)
    job = w.request(CREDIT)
    w.cust.cancel_job(job)
    assert audit_all(w.cust).ok
    # The token's balance of the market changed with no Transfer event (Credit's `_balances`
    # mapping is its slot 0): no rule accounts for it.
    slot = keccak(encode(["address", "uint256"], [w.cust.address, 0]))
    held = w.cust.wallet_balance(w.cust.address)
    w.cust.w3.provider.make_request(
        RPCEndpoint("anvil_setStorageAt"),
        [w.cust.credit.address, "0x" + slot.hex(), "0x" + (held + 7).to_bytes(32, "big").hex()],
    )
    report = audit_all(w.cust)
    assert [d.check for d in report.all_discrepancies] == ["conservation"]
    assert "+7 units" in report.all_discrepancies[0].message


def test_audit_of_an_unknown_job_says_so(grid: Grid) -> None:
    w = World(grid)
    out = CliRunner().invoke(
        app, ["--rpc-url", grid.anvil.url, "--market", w.cust.address, "audit", "job", "42"]
    )
    assert out.exit_code == 1
    assert "job 42 has no events" in out.output
    assert JobStatus.PENDING.name  # the enum is importable from the CLI's side too


def _balance_slot(m: Market, account: str) -> int:
    """The storage slot of `account`'s entry in JobMarket's balance mapping, found by value."""
    want = m.balance_of(account)
    for base in range(64):
        slot = int.from_bytes(keccak(encode(["address", "uint256"], [account, base])), "big")
        if int(m.w3.eth.get_storage_at(m.address, slot).hex() or "0", 16) == want:
            return slot
    raise AssertionError("no storage slot holds the balance: JobMarket's layout changed")


def test_audit_names_the_account_and_block_where_a_balance_went_wrong(grid: Grid) -> None:
    w = World(grid)
    who = dev_account(3).address
    slot = _balance_slot(w.cust, who)
    held = w.cust.balance_of(who)
    # anvil_setStorageAt rewrites the head block's state: first a block with no event, so the
    # corruption falls between the account's last good event and its next one.
    w.cust.w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    w.cust.w3.provider.make_request(
        RPCEndpoint("anvil_setStorageAt"),
        [w.cust.address, hex(slot), "0x" + (held + 7).to_bytes(32, "big").hex()],
    )
    receipt = w.cust.deposit(CREDIT)  # the next event to touch the account shows it
    report = audit_all(w.cust)
    assert sorted(d.check for d in report.all_discrepancies) == ["balance", "conservation"]
    bad = next(d for d in report.all_discrepancies if d.check == "balance")
    assert bad.account == who and bad.block == receipt["blockNumber"]
    assert f"holds {held + 7 + CREDIT} units" in bad.message
    assert f"sum to {held + CREDIT} units" in bad.message
    assert f"first wrong after block {receipt['blockNumber']}" in bad.message
    statement = audit_account(w.cust, who)
    assert [d.check for d in statement.discrepancies] == ["balance"]
    assert statement.balance == held + 7 + CREDIT and statement.rebuilt == held + CREDIT
    out = CliRunner().invoke(
        app, ["--rpc-url", grid.anvil.url, "--market", w.cust.address, "audit", "account", who]
    )
    assert out.exit_code == 1 and "DISCREPANCIES" in out.output


def _ended(m: Market, receipt: Any) -> dict[str, int]:
    ev = next(e for e in m.decode_events(receipt) if e.name == "JobEnded")
    return {k: int(ev.args[k]) for k in ("paid", "fee", "refunded")}


@ON_ANVIL_AND_HARDHAT
def test_account_statement_follows_every_credit_of_a_customer_and_a_provider(
    grid: Grid,
) -> None:
    w = World(grid)  # the customer: 1,000 credits minted, 500 deposited
    who = dev_account(3).address
    finished = w.request(10 * CREDIT)
    w.run(finished)
    w.advance(60)
    fin = _ended(w.cust, w.prov.complete_job(finished, 0))
    topped = w.request(5 * CREDIT)
    w.cust.top_up(topped, 2 * CREDIT)
    can = _ended(w.cust, w.cust.cancel_job(topped))
    live = w.request(3 * CREDIT)
    w.cust.withdraw(100 * CREDIT)

    a = audit_account(w.cust, who)
    assert a.ok, [d.to_json() for d in a.discrepancies]
    assert [(m.kind, m.job_id, m.amount) for m in a.movements] == [
        ("deposit", None, 500 * CREDIT),
        ("escrow", finished, -10 * CREDIT),
        ("refund", finished, fin["refunded"]),
        ("escrow", topped, -5 * CREDIT),
        ("top-up", topped, -2 * CREDIT),
        ("refund", topped, 7 * CREDIT),
        ("escrow", live, -3 * CREDIT),
        ("withdrawal", None, -100 * CREDIT),
    ]
    assert can["refunded"] == 7 * CREDIT and fin["paid"] > 0
    running = 0
    for m in a.movements:  # each row carries the balance after it, and its block's time
        running += m.amount
        assert m.balance == running
        assert m.time == w.cust.w3.eth.get_block(m.block)["timestamp"]
    assert a.balance == a.rebuilt == running == w.cust.balance_of(who)
    assert a.in_escrow == 3 * CREDIT  # the live job's
    assert a.wallet == w.cust.wallet_balance(who) == 600 * CREDIT
    assert a.totals()["refund"] == fin["refunded"] + 7 * CREDIT

    p = audit_account(w.cust, w.prov_addr)
    assert p.ok and [(m.kind, m.job_id, m.amount) for m in p.movements] == [
        ("payment", finished, fin["paid"])
    ]
    assert p.balance == fin["paid"] and p.in_escrow == 0

    nobody = audit_account(w.cust, dev_account(9).address)
    assert nobody.ok and nobody.movements == [] and nobody.balance == 0
    with pytest.raises(AuditError, match="from block 1000000000 is not on the chain"):
        audit_account(w.cust, who, from_block=10**9)
    with pytest.raises(AuditError, match="'0x12' is not an address"):
        audit_account(w.cust, "0x12")


def test_audit_account_command_for_people_and_scripts(grid: Grid) -> None:
    w = World(grid)
    who = dev_account(3).address
    for _ in range(3):
        w.cust.cancel_job(w.request(CREDIT))
    base = ["--rpc-url", grid.anvil.url, "--market", w.cust.address, "audit", "account"]

    out = CliRunner().invoke(app, [*base, who, "--json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output.strip().splitlines()[-1])
    assert got["ok"] is True and got["account"] == who and len(got["movements"]) == 7
    assert got["balance"] == got["rebuilt"] == 500 * CREDIT
    assert got["totals"] == {"deposit": 500 * CREDIT, "escrow": -3 * CREDIT, "refund": 3 * CREDIT}

    human = CliRunner().invoke(app, [*base, who, "--last", "2"], terminal_width=100)
    assert human.exit_code == 0, human.output
    assert "the last 2 of 7 movements" in human.output
    assert "deposited 500, locked in jobs 3, refunded 3" in human.output
    assert f"OK account {who}" in human.output
    assert max(len(line) for line in human.output.splitlines()) <= 100

    bad = CliRunner().invoke(app, [*base, "0x1234"])
    assert bad.exit_code == 2 and "account '0x1234' is not an address" in bad.output

    # The account's own wallet, from the key in the environment, when no address is given.
    mine = CliRunner().invoke(
        app,
        ["--key-env", "AUDIT_KEY", *base[:-2], "audit", "account", "--json"],
        env={"AUDIT_KEY": "0x" + bytes(dev_account(4).key).hex()},
    )
    assert mine.exit_code == 0, mine.output
    assert json.loads(mine.output.strip().splitlines()[-1])["movements"] == []
