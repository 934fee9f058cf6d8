"""Two amounts side by side are easy to swap: the SDK takes them by keyword only."""

from __future__ import annotations

import inspect

from metascheduler.client import Client


def test_submit_takes_escrow_and_max_price_by_keyword_only() -> None:
    params = inspect.signature(Client.submit).parameters
    assert params["escrow"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["max_price"].kind is inspect.Parameter.KEYWORD_ONLY
