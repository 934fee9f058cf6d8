"""How the ingester cuts a backlog into runs (pure: no chain, no store)."""

from __future__ import annotations

from metascheduler.chain.events import ChainEvent
from metascheduler.store.ingest import chunk_runs


def _events(per_block: list[int], first_block: int = 10) -> list[ChainEvent]:
    out = []
    for k, n in enumerate(per_block):
        for i in range(n):
            b = first_block + k
            out.append(ChainEvent("JobRequested", {}, "0x0", b, f"0x{b:x}", f"0x{b:x}{i}", i))
    return out


def test_chunkRuns_doubleInSizeAndKeepBlocksWhole() -> None:
    events = _events([3] * 20)  # blocks 10..29, 3 events each
    runs = chunk_runs(10, 31, events, 2)
    sizes = [len(r[2]) for r in runs]
    # At least 2, then 4, 8, 16 (rounded up to whole blocks of 3), then the rest.
    assert sizes == [3, 6, 9, 18, 24]
    assert [e for r in runs for e in r[2]] == events
    for lo, hi, chunk in runs:
        assert all(lo <= e.block_number <= hi for e in chunk)
    # The ranges tile start..end with no gap, so each run's cursor covers its blocks.
    assert runs[0][0] == 10 and runs[-1][1] == 31
    assert all(runs[k][1] + 1 == runs[k + 1][0] for k in range(len(runs) - 1))


def test_chunkRuns_oneRunWithoutAFirstSizeOrForAShortRange() -> None:
    events = _events([2, 2])
    assert chunk_runs(10, 11, events, None) == [(10, 11, events)]
    assert chunk_runs(10, 11, events, 4) == [(10, 11, events)]
