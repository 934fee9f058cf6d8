"""The oracle is built by a factory from its settings (key, node, market, store); its constructor
only wires what it is given, so making one touches no node, file or database."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from metascheduler.chain import Market
from metascheduler.chain.rpc import connect
from metascheduler.keys import KeyLoadError
from metascheduler.oracle.service import Oracle, build
from metascheduler.oracle.settings import OracleSettings
from metascheduler.store import make_engine

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
#: Nothing listens here: any call to the node would fail.
NO_NODE = "http://127.0.0.1:9"


def test_the_constructor_touches_no_node_and_no_database(tmp_path: Path) -> None:
    settings = OracleSettings(rpc_url=NO_NODE, market_address=MARKET)
    account = Account.create()
    market = Market(connect(NO_NODE, timeout_s=0.5), MARKET, account)
    db = tmp_path / "oracle.db"
    oracle = Oracle(settings, market, make_engine(f"sqlite:///{db}"))
    assert oracle.address == account.address and oracle.market is market
    assert not db.exists()  # never connected to


def test_build_refuses_a_missing_key_before_reaching_the_node(tmp_path: Path) -> None:
    db = tmp_path / "oracle.db"
    settings = OracleSettings(
        rpc_url=NO_NODE, market_address=MARKET, database_url=f"sqlite:///{db}"
    )
    with pytest.raises(KeyLoadError, match="no key configured"):
        build(settings)
    assert not db.exists()
