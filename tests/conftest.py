"""Shared fixtures: a real anvil chain and a fresh deployment per test that asks for one."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from metascheduler.chain import Market
from metascheduler.chain.deployment import Deployment
from metascheduler.chain.rpc import connect
from metascheduler.devnet.anvil import Anvil, LocalNode, dev_account, start_anvil
from metascheduler.devnet.hardhat import start_hardhat

#: Below this much free disk the run warns first: a full disk fails tests far from the cause
#: (in one CI run it stopped pytest with an internal error, without a word about space).
LOW_DISK_GIB = 2.0


def _free_gib() -> float:
    return shutil.disk_usage(tempfile.gettempdir()).free / 2**30


def pytest_report_header() -> str:
    return f"disk: {_free_gib():.1f} GiB free in {tempfile.gettempdir()}"


def pytest_sessionstart(session: pytest.Session) -> None:
    free = _free_gib()
    if free < LOW_DISK_GIB:
        session.config.issue_config_time_warning(
            pytest.PytestWarning(
                f"only {free:.1f} GiB free in {tempfile.gettempdir()}: tests that write stores "
                "and logs may fail with 'No space left on device'; free some space first"
            ),
            stacklevel=2,
        )


@pytest.hookimpl(tryfirst=True)
def pytest_internalerror(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """The cause in one line before pytest's long traceback, whose last line (the error) a
    truncated CI log may not show."""
    free = _free_gib()
    sys.stderr.write(
        f"pytest stopped on an internal error: {excinfo.typename}: {excinfo.value} "
        f"({free:.1f} GiB free in {tempfile.gettempdir()})\n"
    )


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    """One anvil for the session (automine). Tests isolate themselves by deploying afresh."""
    with start_anvil(accounts=30) as chain:
        yield chain


@pytest.fixture(scope="session")
def hardhat() -> Iterator[LocalNode]:
    """One Hardhat Network for the session, for the runs marked `hardhat`."""
    with start_hardhat(accounts=30) as chain:
        yield chain


#: The EVM nodes that tests needing only standard JSON-RPC run on, each by the name of a
#: session fixture that yields an object with a `url`. Another node joins by adding its fixture.
NODES = ["anvil", pytest.param("hardhat", marks=pytest.mark.hardhat)]


@pytest.fixture(scope="session", params=NODES)
def evm_node(request: pytest.FixtureRequest) -> Any:
    """Each node of NODES in turn (tests that use anvil's own methods ask for `anvil`)."""
    return request.getfixturevalue(request.param)


#: Runs a test whose `grid` needs only standard JSON-RPC on each node of NODES in turn.
ON_ANVIL_AND_HARDHAT = pytest.mark.parametrize("grid", NODES, indirect=True)


@dataclass
class Grid:
    #: The chain's node: anvil, or Hardhat Network in the runs marked `hardhat`.
    anvil: LocalNode
    deployment: Deployment
    admin: LocalAccount
    oracle: LocalAccount

    def market(self, account: LocalAccount | None = None) -> Market:
        return Market(connect(self.anvil.url), self.deployment.market, account)


@pytest.fixture
def grid(request: pytest.FixtureRequest) -> Grid:
    """A fresh Credit + JobMarket on the session's anvil (or, parametrized by
    ON_ANVIL_AND_HARDHAT, on its Hardhat Network); account 0 is admin, 1 the oracle."""
    node: LocalNode = request.getfixturevalue(getattr(request, "param", "anvil"))
    admin, oracle = dev_account(0), dev_account(1)
    w3 = connect(node.url)
    dep = Market.deploy(w3, admin, oracle=oracle.address, accept_timeout_s=60, start_timeout_s=600)
    return Grid(node, dep, admin, oracle)
