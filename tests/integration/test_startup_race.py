"""Services that share a store start together without racing on its migrations: the oracle and
the API each migrate at start-up, and `devnet up` starts them at the same moment."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.store_db import BACKENDS, fresh_url

#: Enough rounds that the landed code (no lock around the migrations) failed in every run tried.
ROUNDS = 25

#: One service's start-up as far as the store goes, in a real process: wait for the word, then
#: migrate and open the store exactly as the oracle's and the API's start-ups do.
CHILD = """
import sys
from sqlalchemy import text
from metascheduler.store import RESULTS, make_engine, upgrade_to_head

print("ready", flush=True)
for line in sys.stdin:
    url = line.strip()
    try:
        upgrade_to_head(url)
        upgrade_to_head(url, RESULTS)  # the API's results tables: in the store's database here
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
            conn.execute(text("SELECT count(*) FROM log_chunks")).scalar_one()
        engine.dispose()
        print("ok", flush=True)
    except Exception as exc:
        print(f"failed: {type(exc).__name__}: {exc}".replace("\\n", " "), flush=True)
"""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def services() -> Iterator[list[subprocess.Popen[str]]]:
    """Two processes standing for the oracle and the API, started and imported once, then told
    to start up at the same instant round after round."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in ("oracle", "api")
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        yield procs
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
            p.wait(timeout=30)


def test_oracle_and_api_migrate_one_store_at_the_same_instant(
    backend: str, services: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    failures = []
    for i in range(ROUNDS):
        round_dir = tmp_path / f"round{i}"
        round_dir.mkdir()
        url = next(fresh_url(backend, round_dir))  # PostgreSQL: an empty schema each round
        for p in services:  # both lines go out before either answer is read
            assert p.stdin is not None
            p.stdin.write(url + "\n")
            p.stdin.flush()
        for name, p in zip(("oracle", "api"), services, strict=True):
            assert p.stdout is not None
            answer = p.stdout.readline().strip()
            if answer != "ok":
                failures.append(f"round {i}, {name}: {answer or 'no answer (process died)'}")
    assert not failures, f"{len(failures)} of {2 * ROUNDS} start-ups failed: {failures[:5]}"
