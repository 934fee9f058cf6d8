"""Shared fixtures: a real anvil chain and a fresh deployment per test that asks for one."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount

from metascheduler.chain import Market
from metascheduler.chain.deployment import Deployment
from metascheduler.chain.rpc import connect
from metascheduler.devnet.anvil import Anvil, dev_account, start_anvil

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


@dataclass
class Grid:
    anvil: Anvil
    deployment: Deployment
    admin: LocalAccount
    oracle: LocalAccount

    def market(self, account: LocalAccount | None = None) -> Market:
        return Market(connect(self.anvil.url), self.deployment.market, account)


@pytest.fixture
def grid(anvil: Anvil) -> Grid:
    """A fresh Credit + JobMarket on the session's anvil; account 0 is admin, 1 the oracle."""
    admin, oracle = dev_account(0), dev_account(1)
    w3 = connect(anvil.url)
    dep = Market.deploy(w3, admin, oracle=oracle.address, accept_timeout_s=60, start_timeout_s=600)
    return Grid(anvil, dep, admin, oracle)
