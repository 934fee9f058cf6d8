"""A reorg (anvil_reorg) under the ingester: afterwards the store matches the chain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from web3 import Web3

from metascheduler.chain import Market, Terms
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import Hardware, Prices
from metascheduler.devnet.anvil import Anvil, dev_account, start_anvil
from metascheduler.store import Event, Ingester, Job, make_engine, session_factory, upgrade_to_head
from tests.conftest import Grid
from tests.integration import oracle_kit as kit

pytestmark = pytest.mark.chain


@pytest.fixture
def own_anvil() -> Iterator[Anvil]:
    """Its own chain: a reorg must not rewrite the blocks other tests deployed in."""
    with start_anvil(accounts=10) as chain:
        yield chain


def test_store_matches_chain_after_reorg(own_anvil: Anvil, tmp_path: Path) -> None:
    w3 = connect(own_anvil.url)
    dep = Market.deploy(w3, dev_account(0), oracle=dev_account(1).address)
    grid = Grid(own_anvil, dep, dev_account(0), dev_account(1))
    prov = kit.provider(grid, 2, Hardware(1, 16, 0, 65536), Prices(1_000, 0, 10), [])
    cust = kit.customer(grid, 3)
    ids = [kit.request(cust, f"r{i}", cpus=2, mem_mb=2048) for i in range(3)]
    url = f"sqlite:///{tmp_path / 'reorg.db'}"
    upgrade_to_head(url)
    sessions = session_factory(make_engine(url))
    ing = Ingester(w3, dep.market, sessions, confirmations=0, start_block=dep.block)
    ing.run()

    # Three more blocks the store ingests, then the chain forgets them.
    oracle = grid.market(grid.oracle)
    paddr = prov.sender_or_fail().address
    oracle.place_job(
        ids[0], paddr, Terms.for_spec(kit.spec_bytes("r0", 2, 2048), 2, 0, 2048, kit.CREDIT)
    )
    prov.accept_job(ids[0])
    cust.cancel_job(ids[1])
    ing.run()
    with sessions() as s:
        assert s.get(Job, ids[0]).status == 2  # type: ignore[union-attr]
    w3.provider.make_request("anvil_reorg", [3, []])  # type: ignore[arg-type]
    # The new branch carries different activity at the same heights (the customer's nonce
    # went back with its forgotten cancel).
    cust.sender_or_fail().resync_nonce()
    cust.cancel_job(ids[2])
    later = kit.request(cust, "after", cpus=1)
    ing.run()

    market = grid.market()
    with sessions() as s:
        for jid in [*ids, later]:
            row = s.get(Job, jid)
            assert row is not None, f"job {jid} missing from the store"
            assert row.status == market.get_job(jid).status, f"job {jid}"
        stored = {(e.tx_hash, e.log_index) for e in s.scalars(select(Event))}
    chain_logs = w3.eth.get_logs(
        {
            "address": Web3.to_checksum_address(dep.market),
            "fromBlock": dep.block,
            "toBlock": "latest",
        }
    )
    assert stored == {(lg["transactionHash"].to_0x_hex(), lg["logIndex"]) for lg in chain_logs}
