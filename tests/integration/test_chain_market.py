"""The chain layer against a real anvil: lifecycles, billing parity with billing.py, and
reverts decoded into words."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from metascheduler import billing
from metascheduler.chain import JobStatus, Market, RevertError, Terms
from metascheduler.chain.errors import ChainError
from metascheduler.chain.rpc import raw_batch, retrying
from metascheduler.chain.types import (
    NO_DIGEST,
    Hardware,
    Placement,
    Prices,
    ProviderAction,
    ProviderStep,
)
from metascheduler.devnet.anvil import dev_account, node_rpc
from tests.conftest import ON_ANVIL_AND_HARDHAT, Grid

pytestmark = pytest.mark.chain
CREDIT = billing.UNITS_PER_CREDIT
SPEC = b'{"command":["true"],"name":"t"}'


def _setup(
    grid: Grid, prices: Prices = Prices(1_000, 50_000, 100)
) -> tuple[Market, Market, Market]:
    admin = grid.market(grid.admin)
    prov = grid.market(dev_account(2))
    cust = grid.market(dev_account(3))
    prov.register_provider(Hardware(1, 64, 2, 262_144), prices, ["x86_64"])
    admin.approve_provider(prov.sender_or_fail().address)
    admin.mint(cust.sender_or_fail().address, 1_000 * CREDIT)
    cust.approve(2**256 - 1)
    cust.deposit(500 * CREDIT)
    return admin, prov, cust


def _advance(m: Market, seconds: int) -> None:
    node_rpc(m.w3, "evm_increaseTime", seconds)


def _next_block_at(m: Market, timestamp: int) -> None:
    node_rpc(m.w3, "evm_setNextBlockTimestamp", timestamp)


@ON_ANVIL_AND_HARDHAT
def test_finished_job_is_billed_as_billing_py_says(grid: Grid) -> None:
    admin, prov, cust = _setup(grid)
    admin.set_fee(250)
    oracle = grid.market(grid.oracle)
    job = cust.request_job(SPEC, 4, 1, 4096, max_price_per_minute=10 * CREDIT, escrow=100 * CREDIT)
    oracle.place_job(
        job, prov.sender_or_fail().address, Terms.for_spec(SPEC, 4, 1, 4096, 10 * CREDIT)
    )
    prov.provider_batch(
        [ProviderStep(job, ProviderAction.ACCEPT), ProviderStep(job, ProviderAction.START)]
    )
    started = cust.get_job(job).since
    _advance(cust, 437)
    receipt = prov.complete_job(job, 0)
    ended = next(e for e in prov.decode_events(receipt) if e.name == "JobEnded")
    elapsed = cust.w3.eth.get_block(receipt["blockNumber"])["timestamp"] - started

    price = billing.price_per_minute(4, 1, 4096, 1_000, 50_000, 100)
    cost = billing.cost(price=price, elapsed_s=elapsed, escrow=100 * CREDIT)
    fee = billing.fee(cost, 250)
    assert ended.args["to"] == JobStatus.FINISHED
    assert (ended.args["paid"], ended.args["fee"], ended.args["refunded"]) == (
        cost - fee,
        fee,
        100 * CREDIT - cost,
    )
    assert cust.quote(prov.sender_or_fail().address, 4, 1, 4096) == price


def test_a_complete_step_commits_to_its_result_digest(grid: Grid) -> None:
    """A COMPLETE step's digest is what JobEnded emits; a step without one commits to none, and a
    digest of the wrong length is refused in words before anything is sent."""
    _, prov, cust = _setup(grid)
    oracle = grid.market(grid.oracle)
    terms = Terms.for_spec(SPEC, 1, 0, 1024, CREDIT)
    jobs = [
        cust.request_job(SPEC, 1, 0, 1024, max_price_per_minute=CREDIT, escrow=10 * CREDIT)
        for _ in range(2)
    ]
    oracle.place_jobs([Placement(j, prov.sender_or_fail().address, terms) for j in jobs])
    prov.provider_batch(
        [ProviderStep(j, a) for j in jobs for a in (ProviderAction.ACCEPT, ProviderAction.START)]
    )
    digest = bytes(range(32))
    with pytest.raises(ValueError, match=f"job {jobs[0]}: a result digest is 32 bytes"):
        prov.provider_batch([ProviderStep(jobs[0], ProviderAction.COMPLETE, 0, digest[:31])])
    receipt = prov.provider_batch(
        [
            ProviderStep(jobs[0], ProviderAction.COMPLETE, 0, digest),
            ProviderStep(jobs[1], ProviderAction.COMPLETE, 1),
        ]
    )
    ended = {e.args["jobId"]: e for e in prov.decode_events(receipt) if e.name == "JobEnded"}
    assert bytes(ended[jobs[0]].args["resultDigest"]) == digest
    assert bytes(ended[jobs[1]].args["resultDigest"]) == NO_DIGEST


@ON_ANVIL_AND_HARDHAT
def test_out_of_credits_at_exactly_funded_seconds(grid: Grid) -> None:
    _, prov, cust = _setup(grid)
    oracle = grid.market(grid.oracle)
    escrow = 5_000
    job = cust.request_job(SPEC, 2, 0, 1024, max_price_per_minute=CREDIT, escrow=escrow)
    oracle.place_job(job, prov.sender_or_fail().address, Terms.for_spec(SPEC, 2, 0, 1024, CREDIT))
    prov.accept_job(job)
    prov.start_job(job)
    view = cust.get_job(job)
    until = cust.funded_until(job)
    assert until == view.since + billing.funded_seconds(escrow=escrow, price=view.price_per_minute)
    receipt = cust.expire_jobs([job])
    skipped = cust.skipped(receipt)
    assert skipped and "still has credits" in skipped[0][2]
    _next_block_at(cust, until - 1)  # one second short: still funded
    assert "still has credits" in cust.skipped(cust.expire_jobs([job]))[0].error
    _next_block_at(cust, until)
    receipt = cust.expire_jobs([job])
    assert not cust.skipped(receipt)
    assert cust.get_job(job).status == JobStatus.OUT_OF_CREDITS


@ON_ANVIL_AND_HARDHAT
def test_insufficient_balance_is_decoded_with_the_missing_amount(grid: Grid) -> None:
    _, _, cust = _setup(grid)
    with pytest.raises(RevertError) as info:
        cust.request_job(SPEC, 1, 0, 1024, max_price_per_minute=CREDIT, escrow=600 * CREDIT)
    assert info.value.name == "MarketInsufficientBalance"
    assert "deposit 100 credits more" in str(info.value)


@ON_ANVIL_AND_HARDHAT
def test_unknown_job_is_decoded(grid: Grid) -> None:
    _, _, cust = _setup(grid)
    with pytest.raises(RevertError, match="job 999 does not exist"):
        cust.cancel_job(999)
    with pytest.raises(RevertError, match="job 999 does not exist"):
        cust.get_job(999)


@ON_ANVIL_AND_HARDHAT
def test_deposit_with_permit(grid: Grid) -> None:
    admin, _, _ = _setup(grid)
    who = dev_account(4)
    admin.mint(who.address, 10 * CREDIT)
    m = grid.market(who)
    m.deposit_with_permit(7 * CREDIT, deadline=2**40)
    assert m.balance_of(who.address) == 7 * CREDIT
    assert m.wallet_balance(who.address) == 3 * CREDIT


def test_balances_of_reads_a_batch_at_a_block_and_falls_back_one_by_one(grid: Grid) -> None:
    _, prov, cust = _setup(grid)
    who = [cust.sender_or_fail().address, prov.sender_or_fail().address, dev_account(9).address]
    block = cust.w3.eth.block_number
    cust.deposit(5 * CREDIT)
    now = cust.balances_of(who)
    assert now == {a: cust.balance_of(a) for a in who}  # keyed as given, equal to single reads
    assert now[who[0]] == 505 * CREDIT and now[who[2]] == 0
    assert cust.balances_of([a.lower() for a in who], block=block)[who[0].lower()] == 500 * CREDIT
    assert cust.balances_of([]) == {}
    # A block the node has not reached fails the batch; the single read names account and block.
    calls: list[str] = []

    def counted(what: str, fn: Callable[[], object]) -> object:
        calls.append(what)
        return retrying(what, fn)

    with pytest.raises(ChainError, match="BlockOutOfRange") as err:
        cust.balances_of(who, block=block + 1_000, retry=counted)
    assert str(err.value).startswith(f"reading {who[0]}'s balance at block {block + 1_000}: ")
    assert calls == ["reading 3 balances", f"reading {who[0]}'s balance at block {block + 1_000}"]


def test_get_jobs_reads_in_batches_leaves_out_unknown_ids_and_reads_at_a_block(
    grid: Grid,
) -> None:
    _, _, cust = _setup(grid)
    first = cust.request_job(SPEC, 1, 0, 1024, max_price_per_minute=CREDIT, escrow=CREDIT)
    block = cust.w3.eth.block_number
    later = [
        cust.request_job(SPEC, 2, 0, 1024, max_price_per_minute=CREDIT, escrow=2 * CREDIT)
        for _ in range(3)
    ]
    cust.cancel_job(later[0])
    calls: list[str] = []

    def counted(what: str, fn: object) -> object:
        calls.append(what)
        return fn()  # type: ignore[operator]

    views = cust.get_jobs([first, *later], retry=counted)
    assert views == {j: cust.get_job(j) for j in [first, *later]}  # checksummed as web3's
    # anvil answers JSON-RPC batches, so the raw path (no web3 formatters) is the one taken.
    assert raw_batch(cust.w3, [("eth_blockNumber", [])]) is not None
    assert views[later[0]].status == JobStatus.CANCELLED
    assert calls == ["reading 4 jobs"]  # one round trip for the four

    # An unknown id fails the batch; the rest are read one by one and it is left out.
    calls.clear()
    assert cust.get_jobs([first, 999], retry=counted) == {first: cust.get_job(first)}
    assert calls == ["reading 2 jobs", f"reading job {first}", "reading job 999"]

    # At an earlier block only the job that existed then is there, as it was then.
    at_block = cust.get_jobs([first, *later], block=block)
    assert at_block == {first: cust.get_job(first)}


@ON_ANVIL_AND_HARDHAT
def test_a_send_that_reaches_the_node_twice_is_one_transaction(grid: Grid) -> None:
    """A send retried after its answer was lost, or rebroadcast while it waits to be mined,
    reaches the node twice: the second time is no error, whatever words the node uses for it."""
    sender = grid.market(dev_account(3)).sender_or_fail()
    w3 = sender.w3
    node_rpc(w3, "evm_setAutomine", False)
    try:
        pending = sender.send(dev_account(4).address, b"", "a transfer", gas=21_000, value=1)
        sender.broadcast(pending)  # the same signed bytes again, as a retry sends them
    finally:
        node_rpc(w3, "evm_setAutomine", True)
    node_rpc(w3, "evm_mine")
    assert sender.wait(pending)["status"] == 1
