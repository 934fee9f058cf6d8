"""The agent's state file (``agent.state``): one agent per directory, atomic saves, refusals in
words for a state of another market or provider, a state of another chain moved aside, and the
tombstones that keep a job from ever being submitted twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from metascheduler.agent.state import (
    STATE_FILE,
    AgentState,
    JobRecord,
    StateError,
    StateStore,
)

MARKET, PROVIDER = "0x" + "11" * 20, "0x" + "22" * 20
GENESIS = "0x" + "ab" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state")
    s.open()
    yield s
    s.close()


def test_a_second_agent_on_the_same_directory_is_refused(store: StateStore) -> None:
    other = StateStore(store.dir)
    with pytest.raises(StateError, match=r"another agent holds .*agent\.lock"):
        other.open()
    store.close()
    other.open()  # free once the first one let go
    other.close()


def test_a_fresh_directory_gives_a_fresh_state(store: StateStore) -> None:
    st = store.load(MARKET, PROVIDER, GENESIS)
    assert (st.market, st.provider, st.genesis, st.jobs, st.cursor_block) == (
        MARKET,
        PROVIDER,
        GENESIS,
        {},
        None,
    )


def test_what_is_saved_loads_back(store: StateStore) -> None:
    st = store.load(MARKET, PROVIDER, GENESIS)
    st.cursor_block, st.cursor_hash, st.heartbeat_seq = 41, "0x" + "cd" * 32, 7
    st.jobs[5] = JobRecord(5, placed_block=40, native_id="123", time_limit_s=90, killed=True)
    st.done[2] = JobRecord(2, native_id="99", retired_block=30)
    store.save(st)
    assert not store.path.with_suffix(".tmp").exists()
    assert store.load(MARKET.upper().replace("0X", "0x"), PROVIDER, GENESIS) == st


def test_a_record_changed_in_place_is_saved_changed(store: StateStore) -> None:
    """Records are encoded again only when their values change: a change made to a record
    in place between two saves reaches the file."""
    st = store.load(MARKET, PROVIDER, GENESIS)
    for j in range(1, 4):
        st.jobs[j] = JobRecord(j, placed_block=40)
    st.done[9] = JobRecord(9, native_id="9", retired_block=30)
    store.save(st)
    st.jobs[2].native_id, st.jobs[2].killed = "77", True
    st.retire(st.jobs.pop(3), 50)
    st.revive(9)
    store.save(st)
    back = store.load(MARKET, PROVIDER, GENESIS)
    assert back == st
    assert back.jobs[2].native_id == "77" and back.jobs[2].killed
    assert set(back.jobs) == {1, 2, 9} and set(back.done) == set()
    assert json.loads(store.path.read_text())["jobs"]["2"]["killed"] is True


def test_an_unreadable_state_says_how_to_start_afresh(store: StateStore) -> None:
    store.path.write_text("{not json")
    with pytest.raises(StateError, match=r"unreadable .*Move it aside to start afresh"):
        store.load(MARKET, PROVIDER, GENESIS)


def test_a_state_of_another_version_is_refused(store: StateStore) -> None:
    store.save(AgentState(MARKET, PROVIDER, GENESIS, version=99))
    with pytest.raises(StateError, match="has version 99; this agent reads 1"):
        store.load(MARKET, PROVIDER, GENESIS)


@pytest.mark.parametrize(("market", "provider"), [("0x" + "33" * 20, PROVIDER), (MARKET, MARKET)])
def test_a_state_of_another_market_or_provider_is_refused(
    store: StateStore, market: str, provider: str
) -> None:
    store.save(AgentState(MARKET, PROVIDER, GENESIS))
    with pytest.raises(StateError, match="give this agent its own state_dir"):
        store.load(market, provider, GENESIS)


def test_a_state_of_another_chain_is_moved_aside(store: StateStore) -> None:
    old = AgentState(MARKET, PROVIDER, GENESIS, cursor_block=9)
    old.jobs[1] = JobRecord(1, native_id="7")
    store.save(old)
    new_genesis = "0x" + "ef" * 32
    st = store.load(MARKET, PROVIDER, new_genesis)
    assert st.jobs == {} and st.cursor_block is None and st.genesis == new_genesis
    aside = store.dir / f"{STATE_FILE}.{GENESIS[2:10]}.old"
    assert json.loads(aside.read_text())["jobs"]["1"]["native_id"] == "7"
    assert not store.path.exists()


def test_a_retired_job_with_a_backend_job_leaves_a_tombstone() -> None:
    st = AgentState(MARKET, PROVIDER)
    ran, never = JobRecord(1, native_id="a"), JobRecord(2)
    st.jobs = {1: ran, 2: never}
    st.retire(ran, head_block=50)
    st.retire(never, head_block=50)
    assert st.jobs == {} and list(st.done) == [1] and st.done[1].retired_block == 50


def test_a_revived_job_keeps_its_backend_job() -> None:
    st = AgentState(MARKET, PROVIDER)
    st.jobs[1] = JobRecord(1, native_id="a")
    st.retire(st.jobs[1], head_block=50)
    rec = st.revive(1)
    assert rec is not None and rec.native_id == "a" and rec.retired_block is None
    assert st.jobs[1] is rec and st.done == {}
    assert st.revive(1) is None  # nothing left to revive


def test_revive_all_brings_back_every_tombstone() -> None:
    st = AgentState(MARKET, PROVIDER)
    for job_id in (3, 1):
        st.jobs[job_id] = JobRecord(job_id, native_id=str(job_id))
        st.retire(st.jobs[job_id], head_block=10)
    assert st.revive_all() == [1, 3] and sorted(st.jobs) == [1, 3]


def test_tombstones_older_than_any_rewind_are_purged() -> None:
    st = AgentState(MARKET, PROVIDER)
    for job_id, block in ((1, 10), (2, 20)):
        st.jobs[job_id] = JobRecord(job_id, native_id=str(job_id))
        st.retire(st.jobs[job_id], head_block=block)
    st.purge_done(before_block=15)
    assert list(st.done) == [2]
