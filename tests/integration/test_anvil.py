"""The project's anvil writes no chain state to disk and leaves nothing behind when stopped.

By default anvil copies the whole state of every block older than its last 500 to disk, up to
3,600 copies; on the test session's chain, which grows with every deployment, that filled the disk
within one test run."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3.exceptions import Web3RPCError
from web3.types import RPCEndpoint, Wei

from metascheduler.chain.rpc import connect
from metascheduler.devnet.anvil import dev_account, start_anvil

pytestmark = pytest.mark.chain


def test_old_states_are_dropped_not_written_to_disk() -> None:
    home_cache = Path.home() / ".foundry" / "anvil" / "tmp"
    before = set(home_cache.iterdir()) if home_cache.exists() else set()
    with start_anvil(accounts=2) as chain:
        assert chain.cache_dir is not None and chain.cache_dir.is_dir()
        w3 = connect(chain.url)
        alice, bob = dev_account(0), dev_account(1)
        # 600 blocks that each change state, so each would be a state worth persisting.
        for _ in range(3):
            w3.provider.make_request(RPCEndpoint("anvil_mine"), [hex(200)])
            w3.eth.send_transaction({"from": alice.address, "to": bob.address, "value": Wei(1)})
        head = w3.eth.block_number
        assert head >= 600
        assert w3.eth.get_balance(bob.address, head - 10) > 0  # recent history is in memory
        with pytest.raises(Web3RPCError, match="BlockOutOfRange"):
            w3.eth.get_balance(bob.address, 5)
        assert list(chain.cache_dir.iterdir()) == []
        cache_dir = chain.cache_dir
    assert not cache_dir.exists()
    after = set(home_cache.iterdir()) if home_cache.exists() else set()
    assert after <= before, f"anvil left state in {home_cache}: {sorted(after - before)}"
