"""The store on SQLite and PostgreSQL: migrations, ingestion (idempotent, atomic), queries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select

from metascheduler.chain.artifacts import load_artifact
from metascheduler.chain.types import Hardware, JobStatus, Prices
from metascheduler.store import (
    ChainCursor,
    Event,
    Ingester,
    Job,
    Provider,
    make_engine,
    session_factory,
    upgrade_to_head,
)
from metascheduler.store import ingest as ingest_mod
from metascheduler.store import queries as q
from metascheduler.store.ingest import record_of
from metascheduler.store.projection import project
from tests.conftest import Grid
from tests.integration import oracle_kit as kit
from tests.integration.store_db import BACKENDS, fresh_url

pytestmark = pytest.mark.chain


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_url(request.param, tmp_path)


def _activity(grid: Grid) -> dict[str, Any]:
    prov = kit.provider(grid, 2, Hardware(1, 32, 1, 65536), Prices(1_000, 5_000, 10), ["gpu"])
    c1, c2 = kit.customer(grid, 3), kit.customer(grid, 4)
    ids = [kit.request(c1, f"a{i}", cpus=2, mem_mb=2048) for i in range(3)]
    ids += [kit.request(c2, "b0", cpus=1, gpus=1, labels=["gpu"])]
    oracle = grid.market(grid.oracle)
    from metascheduler.chain import Terms

    spec = kit.spec_bytes("a0", 2, 2048)
    paddr = prov.sender_or_fail().address
    oracle.place_job(ids[0], paddr, Terms.for_spec(spec, 2, 0, 2048, kit.CREDIT))
    prov.accept_job(ids[0])
    prov.start_job(ids[0])
    c1.cancel_job(ids[1])
    return {"ids": ids, "provider": paddr, "c1": c1.sender_or_fail().address}


def _snapshot(sessions: Any) -> tuple[Any, ...]:
    with sessions() as s:
        events = s.execute(
            select(Event.tx_hash, Event.log_index, Event.name).order_by(Event.tx_hash)
        ).all()
        jobs = [(j.job_id, j.status, j.provider, j.escrow) for j in s.scalars(select(Job))]
        provs = [(p.address, p.status, p.cpus) for p in s.scalars(select(Provider))]
    return events, sorted(jobs), provs


def _ingester(grid: Grid, sessions: Any, **kw: Any) -> Ingester:
    w3 = grid.market().w3
    return Ingester(
        w3,
        grid.deployment.market,
        sessions,
        confirmations=0,
        start_block=grid.deployment.block,
        **kw,
    )


def test_migrations_are_idempotent(db_url: str) -> None:
    upgrade_to_head(db_url)
    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
    engine.dispose()


def test_ingestion_matches_chain_and_replay_changes_nothing(grid: Grid, db_url: str) -> None:
    facts = _activity(grid)
    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    ing = _ingester(grid, sessions, initial_range=2)  # several steps, the range grows
    assert ing.run() > 0
    first = _snapshot(sessions)
    market = grid.market()
    with sessions() as s:
        for jid in facts["ids"]:
            row = s.get(Job, jid)
            assert row is not None and row.status == market.get_job(jid).status
        assert s.get(Job, facts["ids"][3]).labels == ["gpu"]  # type: ignore[union-attr]
        # The incremental projection equals a projection from scratch.
        records = [record_of(e) for e in s.scalars(select(Event))]
        jobs, provs = project(records)
        assert {j: r["status"] for j, r in jobs.items()} == {
            j.job_id: j.status for j in s.scalars(select(Job))
        }
        assert set(provs) == {facts["provider"]}
    # Replay from the start: the same logs again change nothing.
    with sessions.begin() as s:
        s.execute(delete(ChainCursor))
    ing2 = _ingester(grid, sessions)
    assert ing2.run() == 0
    assert _snapshot(sessions) == first
    engine.dispose()


def test_cursor_and_rows_commit_together(
    grid: Grid, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _activity(grid)
    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    ing = _ingester(grid, sessions)

    def broken(*_: Any) -> None:
        raise RuntimeError("disk full (injected after the event rows were added)")

    monkeypatch.setattr(ingest_mod, "apply_events", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ing.run()
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 0
        assert s.get(ChainCursor, "market") is None
    monkeypatch.undo()
    assert ing.run() > 0
    with sessions() as s:
        assert (s.scalar(select(func.count()).select_from(Event)) or 0) > 0
        assert s.get(ChainCursor, "market") is not None
    engine.dispose()


def test_queries(grid: Grid, db_url: str) -> None:
    facts = _activity(grid)
    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    _ingester(grid, sessions).run()
    ids = facts["ids"]
    with sessions() as s:
        page = q.list_jobs(s, customer=facts["c1"], limit=2)
        assert page.total == 3 and [j.job_id for j in page.items] == [ids[2], ids[1]]
        page2 = q.list_jobs(s, customer=facts["c1"], limit=2, offset=2)
        assert [j.job_id for j in page2.items] == [ids[0]]
        running = q.list_jobs(s, status=int(JobStatus.RUNNING))
        assert [j.job_id for j in running.items] == [ids[0]]
        got = q.job_with_events(s, ids[0])
        assert got is not None
        assert [e.name for e in got[1]] == [
            "JobRequested",
            "JobPlaced",
            "JobStatusChanged",
            "JobStatusChanged",
        ]
        (load,) = q.providers_with_load(s)
        assert (load.running, load.cpus_used, load.placed) == (1, 2, 0)
        stats = q.grid_stats(s)
        assert stats.jobs_by_status == {"RUNNING": 1, "CANCELLED": 1, "PENDING": 2}
        assert stats.cpus_total == 32 and stats.cpus_in_use == 2
        assert [j.job_id for j in q.placement_rows(s)] == [ids[2], ids[3]]
    engine.dispose()


def test_logs_decoded_word_by_word_equal_eth_abis_decoding(grid: Grid) -> None:
    """The fast decoding of raw JSON logs (word by word) gives what eth_abi gives of the same
    logs as web3 formats them; a formatted log decodes word by word the same as a raw one."""
    from metascheduler.chain import rawlogs
    from metascheduler.chain.events import EventDecoder

    _activity(grid)
    market = grid.market()
    w3 = market.w3
    head = w3.eth.block_number
    formatted = w3.eth.get_logs(
        {"address": market.address, "fromBlock": grid.deployment.block, "toBlock": head}
    )
    raw = rawlogs.get_logs(w3, market.address, grid.deployment.block, head)
    assert len(raw) == len(formatted) > 0
    abi = load_artifact("JobMarket").abi
    fast, reference = EventDecoder(abi), EventDecoder(abi, by_words=False)
    assert not reference.fast
    names = set()
    for r, f in zip(raw, formatted, strict=True):
        got, want = fast.decode(r, 7), reference.decode(f, 7)
        assert got == want and got is not None and want is not None
        assert got.address == want.address == f["address"]  # not part of ==
        assert fast.decode(f, 7) == got
        names.add(got.name)
    # Both paths were taken: word by word (JobRequested) and eth_abi (ProviderRegistered).
    assert {"JobRequested", "JobPlaced", "ProviderRegistered"} <= names
    assert "JobRequested" in {n for n, _ in fast.fast.values()}
    assert "ProviderRegistered" not in {n for n, _ in fast.fast.values()}


def test_block_headers_read_in_batches_equal_one_by_one(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`get_blocks` (JSON-RPC batches) gives what `get_block` gives, across batch boundaries;
    a block beyond the head fails as `get_block` does (the batch is re-read one by one)."""
    from web3.exceptions import Web3RPCError

    from metascheduler.chain import rpc

    _activity(grid)
    w3 = grid.market().w3
    head = w3.eth.block_number
    numbers = list(range(max(0, head - 6), head + 1))
    monkeypatch.setattr(rpc, "BLOCKS_PER_BATCH", 3)
    got = rpc.get_blocks(w3, numbers)
    assert list(got) == numbers
    for n in numbers:
        assert got[n] == rpc.get_block(w3, n)
        assert got[n]["hash"] == w3.eth.get_block(n)["hash"].to_0x_hex()
    with pytest.raises(Web3RPCError, match=f"block {head + 5} not found"):
        rpc.get_blocks(w3, [head, head + 5])


def test_chunked_ingestion_is_consistent_at_every_chunk(grid: Grid, db_url: str) -> None:
    """With chunk_events, a range is committed in whole-block chunks: at each pause the store
    is exactly the projection of the events up to its cursor, and the end equals the chain."""
    facts = _activity(grid)
    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    ing = _ingester(grid, sessions, initial_range=10_000, chunk_events=1)
    cursors: list[int] = []

    def check() -> None:
        with sessions() as s:
            cur = s.get(ChainCursor, ingest_mod.CURSOR)
            assert cur is not None
            cursors.append(cur.block_number)
            evs = list(s.scalars(select(Event)))
            assert all(e.block_number <= cur.block_number for e in evs)
            jobs, _ = project([record_of(e) for e in evs])
            assert {j: r["status"] for j, r in jobs.items()} == {
                j.job_id: j.status for j in s.scalars(select(Job))
            }

    assert ing.run(on_chunk=check) > 0
    assert len(cursors) >= 2 and cursors == sorted(cursors)
    market = grid.market()
    with sessions() as s:
        for jid in facts["ids"]:
            row = s.get(Job, jid)
            assert row is not None and row.status == market.get_job(jid).status
    engine.dispose()
