"""The SDK's reads are of one block: a job's state, its events and the chain time all as of the
head it read first, even when a block lands between the reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from metascheduler.chain import Market, Terms
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import Hardware, JobStatus, Prices
from metascheduler.client import Client
from metascheduler.devnet.anvil import dev_account
from tests.conftest import Grid

pytestmark = pytest.mark.chain


def _running_job(grid: Grid) -> tuple[int, Market]:
    prov = grid.market(dev_account(2))
    prov.register_provider(Hardware(1, 8, 0, 8192), Prices(60_000, 0, 0), [])
    grid.market(grid.admin).approve_provider(dev_account(2).address)
    customer = grid.market(dev_account(3))
    customer.faucet()
    customer.approve(10**7)
    customer.deposit(10**7)
    job = customer.request_job(b"spec", 1, 0, 256, max_price_per_minute=10**6, escrow=10**6)
    terms = Terms.for_spec(b"spec", 1, 0, 256, 10**6)
    grid.market(grid.oracle).place_job(job, dev_account(2).address, terms)
    prov.accept_job(job)
    prov.start_job(job)
    return job, prov


def _after_head_read(w3: Any, action: Callable[[], Any]) -> None:
    """Runs `action` (on another connection) right after this connection next reads the head."""
    original = w3.provider.make_request
    pending = [action]

    def make_request(method: Any, params: Any) -> Any:
        response = original(method, params)
        if method == "eth_getBlockByNumber" and params[0] == "latest" and pending:
            pending.pop()()
        return response

    w3.provider.make_request = make_request


def test_status_is_of_the_head_it_read_when_the_job_ends_meanwhile(grid: Grid) -> None:
    job, prov = _running_job(grid)
    w3 = connect(grid.anvil.url)
    client = Client(Market(w3, grid.deployment.market), from_block=grid.deployment.block)
    _after_head_read(w3, lambda: prov.complete_job(job, 0))
    seen = client.status(job)
    # The job as of the head read first: still running there, its completion a block later.
    assert seen.state is JobStatus.RUNNING and seen.exit_code is None
    ended = client.status(job)
    assert ended.state is JobStatus.FINISHED and ended.exit_code == 0
    assert ended.block == seen.block + 1


def test_list_is_of_the_head_it_read_when_a_job_ends_meanwhile(grid: Grid) -> None:
    job, prov = _running_job(grid)
    w3 = connect(grid.anvil.url)
    client = Client(Market(w3, grid.deployment.market), from_block=grid.deployment.block)
    _after_head_read(w3, lambda: prov.complete_job(job, 0))
    (seen,) = client.list(mine=False)
    assert seen.state is JobStatus.RUNNING and seen.exit_code is None
    (ended,) = client.list(mine=False)
    assert ended.state is JobStatus.FINISHED and ended.exit_code == 0
