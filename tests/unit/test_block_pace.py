"""When an agent asks the node for a new block: only once one may be due."""

from __future__ import annotations

import pytest

from metascheduler.agent.chainview import BlockPace


def watch(pace: BlockPace, blocks: int, interval: float, step: float = 0.1) -> float:
    """Polls every ``step`` seconds while a block arrives every ``interval``; the last poll's
    time."""
    t = 0.0
    while t < blocks * interval:
        pace.polled(int(t / interval + 1e-9), t)
        t = round(t + step, 6)
    return t - step


def test_on_a_steady_chain_the_node_is_not_asked_until_the_next_block_is_nearly_due() -> None:
    pace = BlockPace(close_s=0.15, margin_s=0.2)
    assert pace.quiet_until() == 0.0, "nothing learnt yet: every poll is made"
    watch(pace, blocks=4, interval=1.0)
    assert pace.quiet_until() == pytest.approx(3.0 + 1.0 - 0.2)


def test_a_block_seen_late_starts_the_learning_again() -> None:
    """A busy round sees a block long after it came: its arrival time is not known."""
    pace = BlockPace(close_s=0.15, margin_s=0.2)
    watch(pace, blocks=4, interval=1.0)
    pace.polled(5, 5.6)  # the last poll was at 3.9
    assert pace.quiet_until() == 0.0
    for t, number in ((5.7, 5), (5.95, 5), (6.05, 6)):
        pace.polled(number, t)
    assert pace.quiet_until() == 0.0, "one arrival seen: no interval yet"
    for t, number in ((6.95, 6), (7.05, 7)):
        pace.polled(number, t)
    assert pace.quiet_until() == pytest.approx(7.05 + 1.0 - 0.2)


def test_a_chain_that_speeds_up_is_followed() -> None:
    pace = BlockPace(close_s=0.15, margin_s=0.2)
    watch(pace, blocks=3, interval=2.0)  # blocks seen arrive at 2.0 and 4.0; last poll 5.9
    pace.polled(3, 6.0)
    assert pace.quiet_until() == pytest.approx(6.0 + 2.0 - 0.2)
    # Blocks now come every half second: 4, 5 and 6 came while the node was not asked.
    pace.polled(6, 7.85)
    assert pace.quiet_until() == 0.0
    for t, number in ((7.95, 6), (8.0, 7), (8.45, 7), (8.5, 8)):
        pace.polled(number, t)
    assert pace.quiet_until() == pytest.approx(8.5 + 0.5 - 0.2)


def test_a_chain_that_mines_on_a_clock_is_known_for_one_even_after_a_late_block() -> None:
    """Right after sending, the agent looks for its receipts only on a chain that may mine each
    transaction as it comes."""
    pace = BlockPace(close_s=0.15, margin_s=0.2)
    pace.polled(1, 0.0)
    pace.polled(2, 5.0)  # seen late: when it came is not known
    assert not pace.on_a_clock
    for t, number in ((5.9, 2), (6.0, 3), (6.9, 3), (7.0, 4)):
        pace.polled(number, t)
    assert pace.on_a_clock
    pace.polled(9, 20.0)  # seen late: the interval is learnt again, the clock stays known
    assert pace.quiet_until() == 0.0 and pace.on_a_clock
