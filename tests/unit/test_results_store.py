"""The API's record of a job's log (SQLite here, as the API's default): the log is its placed
provider's, chunk by chunk, and a job placed again starts the log of its new placement."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session, sessionmaker

from metascheduler.results import store as rstore
from metascheduler.results.errors import ChunkRefused
from metascheduler.results.keys import new_job_key
from metascheduler.results.logchain import Chunk, ChunkSealer, Deployment, LogRecord
from metascheduler.store.db import RESULTS, make_engine, session_factory, upgrade_to_head

FIRST = Account.create()
SECOND = Account.create()
DEP = Deployment(31337, "0x" + "ab" * 20)
JOB = 7
CAP = 1 << 20


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    upgrade_to_head(url, RESULTS)
    return session_factory(make_engine(url))


def sealer(account: LocalAccount) -> ChunkSealer:
    key = new_job_key()
    return ChunkSealer(account, DEP, JOB, key, b"wrapped")


def line(text: str) -> list[LogRecord]:
    return [LogRecord(1000.0, "stdout", text)]


def append(sessions: sessionmaker[Session], chunk: Chunk, provider: str) -> rstore.Appended:
    with sessions() as s:
        return rstore.append_chunk(
            s, chunk, deployment=DEP, job_id=JOB, provider=provider, max_bytes=CAP
        )


def test_a_job_placed_again_starts_the_log_of_its_new_provider(
    sessions: sessionmaker[Session],
) -> None:
    """The first provider queued the job and shipped its first lines, then the job was taken
    from it (a start timeout, a ban) and placed on another. Before, the new provider's first
    chunk was refused as a replay of the old one's, and the customer never read the run that
    was billed."""
    first = sealer(FIRST)
    append(sessions, first.seal(line("queued on the first")), FIRST.address)
    append(sessions, first.seal([], final=True, exit_code=0), FIRST.address)
    second = sealer(SECOND)
    sent = [second.seal(line("ran on the second")), second.seal([], final=True, exit_code=0)]
    for chunk in sent:
        assert not append(sessions, chunk, SECOND.address).duplicate
    with sessions() as s:
        chunks = rstore.read_chunks(s, JOB, after=-1, limit=10)
        assert [c.digest_hex() for c in chunks] == [c.digest_hex() for c in sent]
        assert rstore.log_summary(s, JOB).final


def test_an_earlier_placement_cannot_write_over_the_placed_providers_log(
    sessions: sessionmaker[Session],
) -> None:
    placed = sealer(SECOND)
    append(sessions, placed.seal(line("ran here")), SECOND.address)
    # The old provider's chunk is checked against the placed provider, as any other.
    with pytest.raises(ChunkRefused) as err:
        append(sessions, sealer(FIRST).seal(line("late")), SECOND.address)
    assert err.value.reason == "forged"
    # The placed provider's own seq 0, sent again with other content, is a replay still.
    with pytest.raises(ChunkRefused) as err:
        append(sessions, sealer(SECOND).seal(line("other")), SECOND.address)
    assert err.value.reason == "replayed"
