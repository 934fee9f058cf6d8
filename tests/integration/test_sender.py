"""The transaction sender (``chain.sender.TxSender``) on a real anvil: nonces handed out once
across threads and re-read after a send behind its back, reverts decoded into the contract's
error in words (at estimate and after mining), and a receipt wait that gives up in words."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from web3.exceptions import TransactionNotFound

from metascheduler.chain import ChainError, Market, RevertError
from metascheduler.chain.errors import ErrorDecoder
from metascheduler.chain.rpc import connect
from metascheduler.chain.sender import TxSender
from metascheduler.devnet.anvil import dev_account
from tests.conftest import Grid

pytestmark = pytest.mark.chain
CREDIT = 10**6


@pytest.fixture
def market(grid: Grid) -> Market:
    """A customer with 100 credits in its wallet and an unlimited allowance for the market."""
    who = dev_account(3)
    grid.market(grid.admin).mint(who.address, 100 * CREDIT)
    m = grid.market(who)
    m.approve(2**256 - 1)
    return m


def deposit_data(m: Market, amount: int) -> bytes:
    return bytes.fromhex(m.contract.encode_abi("deposit", args=[amount])[2:])


def test_threads_sending_at_once_get_one_nonce_each(market: Market) -> None:
    sender = market.sender_or_fail()
    first = sender.resync_nonce()
    pendings = []
    lock = threading.Lock()

    def send() -> None:
        p = sender.send(market.address, deposit_data(market, CREDIT), "depositing", gas=120_000)
        with lock:
            pendings.append(p)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.nonce for p in pendings) == list(range(first, first + 8))
    assert all(r["status"] == 1 for r in sender.wait_all(pendings))
    assert market.balance_of(sender.address) == 8 * CREDIT


def test_a_send_behind_its_back_is_refused_in_words_then_the_nonce_is_re_read(
    grid: Grid, market: Market
) -> None:
    sender = market.sender_or_fail()
    sender.resync_nonce()
    # A second sender of the same account (another process, say) takes the next nonce.
    other = TxSender(connect(grid.anvil.url), sender.account, market.decoder)
    other.transact(market.address, deposit_data(market, CREDIT), "depositing elsewhere")
    with pytest.raises(
        ChainError, match=r"nonce .* was refused .*re-read from the node: send again"
    ):
        sender.transact(market.address, deposit_data(market, CREDIT), "depositing", gas=120_000)
    receipt = sender.transact(market.address, deposit_data(market, CREDIT), "depositing")
    assert receipt["status"] == 1 and market.balance_of(sender.address) == 2 * CREDIT


def test_a_revert_at_the_estimate_reads_as_the_contract_error(market: Market) -> None:
    sender = market.sender_or_fail()
    data = bytes.fromhex(market.contract.encode_abi("withdraw", args=[5 * CREDIT])[2:])
    with pytest.raises(RevertError) as err:
        sender.transact(market.address, data, "withdrawing 5 credits")
    assert err.value.name == "MarketInsufficientBalance"
    assert str(err.value).startswith("withdrawing 5 credits: ") and "deposit 5 credits" in str(
        err.value
    )


def test_a_mined_revert_is_replayed_to_read_the_contract_error(market: Market) -> None:
    sender = market.sender_or_fail()
    data = bytes.fromhex(market.contract.encode_abi("cancelJob", args=[999])[2:])
    with pytest.raises(RevertError) as err:
        sender.transact(market.address, data, "cancelling job 999", gas=100_000)
    assert err.value.name == "JobNotFound" and "job 999 does not exist" in str(err.value)


@pytest.fixture
def no_mining(grid: Grid) -> Iterator[None]:
    w3 = connect(grid.anvil.url)
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        yield
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def test_a_receipt_wait_gives_up_in_words(market: Market, no_mining: None) -> None:
    sender = market.sender_or_fail()
    pending = sender.send(market.address, deposit_data(market, CREDIT), "depositing", gas=120_000)
    with pytest.raises(ChainError, match=r"depositing: transaction .* not mined after 1 s"):
        sender.wait(pending, timeout_s=1.0)


def test_the_chain_id_is_the_nodes(market: Market) -> None:
    assert market.sender_or_fail().chain_id == market.w3.eth.chain_id


def test_a_sender_uses_the_decoder_it_is_given(grid: Grid, market: Market) -> None:
    """Without the market's errors, a revert is still reported, as unknown, with its data."""
    bare = TxSender(connect(grid.anvil.url), dev_account(4), ErrorDecoder([]))
    data = bytes.fromhex(market.contract.encode_abi("cancelJob", args=[999])[2:])
    with pytest.raises(RevertError) as err:
        bare.transact(market.address, data, "cancelling job 999")
    assert err.value.name == "Unknown" and "unknown error 0x" in str(err.value)


def test_the_fee_cap_is_twice_the_base_fee_plus_the_tip(grid: Grid, market: Market) -> None:
    # A sender of its own: the fee it read last is reused for a second.
    sender = TxSender(connect(grid.anvil.url), dev_account(3), market.decoder)
    base = int(market.w3.eth.get_block("latest")["baseFeePerGas"])
    assert sender.max_fee_wei() == 2 * base + sender.priority_fee_wei
    pending = sender.send(market.address, deposit_data(market, CREDIT), "depositing", gas=120_000)
    assert pending.tx["maxPriorityFeePerGas"] == sender.priority_fee_wei
    assert pending.tx["maxFeePerGas"] >= sender.priority_fee_wei + base
    assert sender.wait(pending)["status"] == 1


def test_the_gas_limit_is_the_estimate_with_its_margin_unless_given(market: Market) -> None:
    sender = market.sender_or_fail()
    data = deposit_data(market, CREDIT)
    call = {"to": market.address, "data": data, "from": sender.address}
    estimate = market.w3.eth.estimate_gas(call)  # type: ignore[arg-type]
    tx = {"to": market.address, "data": data, "value": 0}
    assert sender.estimate_gas(tx, "depositing") == int(estimate * sender.gas_margin) + 50_000
    sized = sender.send(market.address, data, "depositing")
    assert sized.tx["gas"] == int(estimate * sender.gas_margin) + 50_000
    given = sender.send(market.address, data, "depositing", gas=123_456)
    assert given.tx["gas"] == 123_456
    assert [r["status"] for r in sender.wait_all([sized, given])] == [1, 1]


def test_a_transaction_the_node_dropped_is_sent_again_while_waited_for(
    grid: Grid, market: Market, no_mining: None
) -> None:
    """A node restart or a reorg can drop a sent transaction from the pool: the wait sends the
    same signed bytes again (after 10 s) and gets the receipt once a block takes it."""
    sender = market.sender_or_fail()
    pending = sender.send(market.address, deposit_data(market, CREDIT), "depositing", gas=120_000)
    w3 = connect(grid.anvil.url)
    w3.provider.make_request("anvil_dropTransaction", [pending.tx_hash.to_0x_hex()])  # type: ignore[arg-type]
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction(pending.tx_hash)
    stop = threading.Event()

    def mine() -> None:
        while not stop.wait(0.5):
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    miner = threading.Thread(target=mine, daemon=True)
    miner.start()
    try:
        receipt = sender.wait(pending, timeout_s=30.0)
    finally:
        stop.set()
        miner.join()
    assert receipt["status"] == 1 and market.balance_of(sender.address) == CREDIT
