"""Policies by name: the oracle's setting and the simulator's ``--policy`` both resolve here."""

from __future__ import annotations

from . import immediate
from .late_binding import LateBinding
from .model import Policy

DEFAULT_POLICY = "late_binding"

POLICY_NAMES: tuple[str, ...] = (
    "late_binding",
    "earliest_start",
    "least_loaded",
    "best_fit",
    "cheapest",
    "round_robin",
    "random",
)


def get_policy(name: str, *, seed: int = 0) -> Policy:
    """The policy called ``name``; ``seed`` only matters to ``random``."""
    rules = {
        "earliest_start": immediate.earliest_start,
        "least_loaded": immediate.least_loaded,
        "best_fit": immediate.best_fit,
        "cheapest": immediate.cheapest,
        "round_robin": immediate.round_robin,
        "random": immediate.make_random(seed),
    }
    if name == "late_binding":
        return LateBinding()
    if name in rules:
        return immediate.ImmediatePolicy(name, rules[name])
    raise KeyError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")
