"""Placement policies: pure code that decides where (and when) pending jobs go.

Plain data in, decisions out, no I/O and no state between calls. The oracle and the simulator
call the same code. Imports nothing of ours but the pure :mod:`metascheduler.billing` leaf.
"""

from .grid import cheapest_prices
from .model import (
    Decisions,
    PendingJob,
    Placement,
    Policy,
    ProviderState,
    RunningJob,
    Unplaceable,
)
from .registry import DEFAULT_POLICY, POLICY_NAMES, get_policy

__all__ = [
    "DEFAULT_POLICY",
    "POLICY_NAMES",
    "Decisions",
    "PendingJob",
    "Placement",
    "Policy",
    "ProviderState",
    "RunningJob",
    "Unplaceable",
    "cheapest_prices",
    "get_policy",
]
