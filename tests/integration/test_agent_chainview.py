"""The agent's reading of blocks on a real anvil: a block the node does not have is an answer
(the chain changed, or this node is behind another the agent read before), not a crash."""

from __future__ import annotations

import pytest

from metascheduler.agent.chainview import ChainView
from tests.conftest import Grid

pytestmark = pytest.mark.chain


def test_a_block_the_node_does_not_have_has_no_hash(grid: Grid) -> None:
    """Before, web3's BlockNotFound left the round, and the agent exited; restarted, it read its
    cursor block again and exited again, for good (a soak's anvil lost two blocks to a reorg,
    and every agent whose cursor was on them stopped serving)."""
    view = ChainView(grid.market(), grid.admin.address)
    head = view.head()
    assert view.block_hash(head.number) == head.hash
    assert view.block_hash(head.number + 1_000) is None
