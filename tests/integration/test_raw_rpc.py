"""The chain layer's calls that skip web3's formatting, on a real anvil: receipts equal to web3's,
calldata equal to web3's, job records read word by word, reverts still decoded into the
contract's error in words, and a node that is down reported in words."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.exceptions import EncodingError
from eth_typing import HexStr
from hexbytes import HexBytes
from web3.datastructures import AttributeDict

from metascheduler.chain import ChainError, Market, RevertError, RpcUnavailable, Terms, calldata
from metascheduler.chain.abi import market_function
from metascheduler.chain.receipts import get_receipt
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import (
    NO_DIGEST,
    Hardware,
    JobStatus,
    Prices,
    ProviderAction,
    ProviderStep,
)
from metascheduler.devnet.anvil import dev_account
from metascheduler.devnet.proxy import TcpProxy
from tests.conftest import Grid

pytestmark = pytest.mark.chain
CREDIT = 10**6
SPEC = b'{"command":["true"],"name":"t"}'


def _plain(value: Any) -> Any:
    """A result with its AttributeDicts as dicts, to compare two results whole."""
    if isinstance(value, AttributeDict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _provider_with_jobs(grid: Grid, n: int) -> tuple[Market, list[int]]:
    """A provider with `n` jobs placed on it (META_SCHEDULED)."""
    admin, oracle = grid.market(grid.admin), grid.market(grid.oracle)
    prov, cust = grid.market(dev_account(2)), grid.market(dev_account(3))
    prov.register_provider(Hardware(1, 64, 0, 65_536), Prices(1_000, 0, 0), ["x86_64"])
    admin.approve_provider(prov.sender_or_fail().address)
    admin.mint(cust.sender_or_fail().address, 100 * CREDIT)
    cust.approve(2**256 - 1)
    cust.deposit(100 * CREDIT)
    jobs = []
    for _ in range(n):
        job = cust.request_job(SPEC, 1, 0, 64, max_price_per_minute=CREDIT, escrow=5 * CREDIT)
        oracle.place_job(job, prov.sender_or_fail().address, Terms.for_spec(SPEC, 1, 0, 64, CREDIT))
        jobs.append(job)
    return prov, jobs


def test_a_receipt_read_raw_equals_web3s(grid: Grid) -> None:
    """A providerBatch's receipt (many logs, one a skipped item), a deployment's (its contract
    address) and a reverted one's: each field as web3 formats it, and the same types."""
    prov, jobs = _provider_with_jobs(grid, 3)
    steps = [ProviderStep(j, ProviderAction.ACCEPT) for j in jobs]
    steps.append(ProviderStep(jobs[0], ProviderAction.COMPLETE))  # not RUNNING: skipped
    batch = prov.provider_batch(steps)
    assert len(prov.skipped(batch)) == 1
    sender = prov.sender_or_fail()
    deployed = sender.transact(None, HexBytes("0x6001600c60003960016000f300"), "deploying")
    reverted = sender.send(prov.address, b"\x12\x34\x56\x78", "calling nothing", gas=60_000)
    w3 = prov.w3
    receipt_of_revert = None
    while receipt_of_revert is None:
        receipt_of_revert = get_receipt(w3, reverted.tx_hash.to_0x_hex())
    assert receipt_of_revert["status"] == 0
    for receipt in (batch, deployed, receipt_of_revert):
        tx_hash = receipt["transactionHash"].to_0x_hex()
        got = get_receipt(w3, tx_hash)
        assert got is not None and isinstance(got, AttributeDict)
        fast: dict[str, Any] = dict(got)
        slow: dict[str, Any] = dict(w3.eth.get_transaction_receipt(HexStr(tx_hash)))
        assert _plain(fast) == _plain(slow)
        assert {k: type(v) for k, v in fast.items()} == {k: type(v) for k, v in slow.items()}
        for lf, ls in zip(fast["logs"], slow["logs"], strict=True):
            assert isinstance(lf, AttributeDict)
            assert {k: type(v) for k, v in lf.items()} == {k: type(v) for k, v in ls.items()}
    assert (
        deployed["contractAddress"]
        == w3.eth.get_transaction_receipt(deployed["transactionHash"])["contractAddress"]
    )
    assert len(batch["logs"]) > 3 and batch["status"] == 1


def test_a_receipt_not_mined_reads_as_none(grid: Grid) -> None:
    assert get_receipt(grid.market().w3, "0x" + "ab" * 32) is None


def test_calldata_encoded_directly_equals_web3s(grid: Grid) -> None:
    m = grid.market()
    steps = [
        (7, int(ProviderAction.COMPLETE), -3, b"\x11" * 32, 2**32 - 1),
        (2**200, int(ProviderAction.ACCEPT), 0, NO_DIGEST, 0),
    ]
    cases: list[tuple[str, list[Any]]] = [
        ("providerBatch", [steps]),
        ("expireJobs", [[1, 2, 3]]),
        ("requestJob", [1, 0, 64, CREDIT, 5 * CREDIT, SPEC]),
        ("refuseJob", [5, "no room for it"]),
    ]
    for name, args in cases:
        fn = market_function(name)
        assert not fn.takes_addresses
        assert m._calldata(m.contract, name, tuple(args)) == HexBytes(
            m.contract.encode_abi(name, args=args)
        )
    # A function taking an address is left to web3, which checks its checksum.
    assert market_function("approveProvider").takes_addresses
    assert isinstance(m._calldata(m.contract, "approveProvider", (grid.oracle.address,)), str)


def test_provider_batch_calldata_written_word_by_word_equals_web3s(grid: Grid) -> None:
    m = grid.market()
    steps = [
        ProviderStep(7, ProviderAction.COMPLETE, -3, b"\x11" * 32, 2**32 - 1),
        ProviderStep(2**200, ProviderAction.ACCEPT),
        ProviderStep(9, ProviderAction.START, 2**31 - 1, NO_DIGEST, 0),
    ]
    for batch in (steps, steps[:1], []):
        items = [(s.job_id, int(s.action), s.exit_code, s.result_digest, s.at) for s in batch]
        assert calldata.provider_batch(batch) == HexBytes(
            m.contract.encode_abi("providerBatch", args=[items])
        )
    for bad, words in (
        (ProviderStep(1, ProviderAction.COMPLETE, 2**31), "exit code 2147483648 is not an int32"),
        (ProviderStep(1, ProviderAction.COMPLETE, 0, b"short"), "digest is 5 bytes, not 32"),
        (ProviderStep(-1, ProviderAction.ACCEPT), "jobId=-1 is not a uint256"),
        (ProviderStep(1, ProviderAction.ACCEPT, at=2**256), "at=.* is not a uint256"),
    ):
        with pytest.raises(EncodingError, match=words):
            calldata.provider_batch([bad])


def test_calldata_refuses_a_value_that_does_not_fit_its_type(grid: Grid) -> None:
    m = grid.market()
    with pytest.raises(EncodingError, match="256"):
        m._calldata(m.contract, "providerBatch", ([(1, 256, 0, NO_DIGEST, 0)],))
    with pytest.raises(EncodingError, match="bytes32"):
        m._calldata(m.contract, "providerBatch", ([(1, 0, 0, b"short", 0)],))


def test_job_records_read_word_by_word_equal_web3s(grid: Grid) -> None:
    prov, jobs = _provider_with_jobs(grid, 2)
    prov.provider_batch([ProviderStep(jobs[0], ProviderAction.ACCEPT)])
    views = prov.get_jobs([*jobs, 999])
    assert sorted(views) == jobs  # 999 is no job: left out
    for job in jobs:
        assert views[job] == prov.get_job(job)  # web3's contract call
    assert views[jobs[0]].status is JobStatus.SCHEDULED
    assert views[jobs[1]].status is JobStatus.META_SCHEDULED
    assert prov.get_jobs([jobs[1]]) == {jobs[1]: views[jobs[1]]}


def test_a_revert_in_a_batch_sent_raw_reads_as_the_contract_error(grid: Grid) -> None:
    """A transaction whose gas is given (no estimate) is mined and reverts: replayed, its error
    is the contract's, in words."""
    prov, jobs = _provider_with_jobs(grid, 1)
    with pytest.raises(RevertError) as err:
        prov.start_job(jobs[0])  # not accepted yet
    assert err.value.name == "JobUnexpectedStatus"
    assert f"job {jobs[0]} is META_SCHEDULED, but this needs it SCHEDULED" in str(err.value)
    sender = prov.sender_or_fail()
    data = prov._calldata(prov.contract, "cancelJob", (jobs[0],))
    with pytest.raises(RevertError) as mined:
        sender.transact(prov.address, data, f"cancelling job {jobs[0]}", gas=100_000)
    assert mined.value.name == "JobNotCustomer" and "only its customer may do this" in str(
        mined.value
    )


def test_a_node_that_is_down_is_reported_in_words(grid: Grid) -> None:
    """Sends, receipt waits and job reads through an endpoint that stopped answering give up
    after their deadline with RpcUnavailable, which names the endpoint and says what to do."""
    port = int(grid.anvil.url.rsplit(":", 1)[1])
    proxy = TcpProxy(("127.0.0.1", port)).start()
    m = Market(connect(proxy.url, timeout_s=1.0), grid.deployment.market, dev_account(4))
    sender = m.sender_or_fail()
    sender.rpc_deadline_s = 1.0
    sender.resync_nonce()
    assert sender.chain_id and sender.max_fee_wei()
    pending = sender.send(m.address, b"", "paying nothing", gas=60_000)
    proxy.cut()
    with pytest.raises(RpcUnavailable, match=r"waiting for paying nothing: .* did not answer"):
        sender.wait(pending)
    with pytest.raises(RpcUnavailable, match=rf"sending approving: .*{proxy.url} did not answer"):
        sender.send(m.address, b"", "approving", gas=60_000)
    with pytest.raises(ChainError, match="check that the node is up"):
        m.get_jobs([1], retry=lambda what, fn: sender._rpc(what, fn))
    proxy.stop()
