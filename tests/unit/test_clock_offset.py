"""The agent's estimate of how far the chain's clock runs from the host's."""

from __future__ import annotations

from metascheduler.agent.chainview import ClockOffset, Head


def head(timestamp: int) -> Head:
    return Head(1, "0x", timestamp)


def test_the_freshest_head_sets_the_offset_not_a_stale_one() -> None:
    clock = ClockOffset()
    assert clock.read(head(1_000), 1_000.5) == -0.5  # just mined
    # The same chain, quiet for a minute: its head is old, its clock is not behind.
    assert clock.read(head(1_000), 1_060.0) == -0.5


def test_a_chain_moved_ahead_is_followed_at_once() -> None:
    clock = ClockOffset()
    clock.read(head(1_000), 1_000.0)
    assert clock.read(head(4_610), 1_010.0) == 3_600.0


def test_a_chain_behind_the_host_gives_a_negative_offset() -> None:
    assert ClockOffset().read(head(1_000), 1_007.0) == -7.0


def test_old_readings_leave_the_window() -> None:
    clock = ClockOffset(window=2)
    clock.read(head(4_600), 1_000.0)  # moved ahead, then the chain was reset
    clock.read(head(1_010), 1_010.0)
    assert clock.read(head(1_020), 1_020.0) == 0.0
