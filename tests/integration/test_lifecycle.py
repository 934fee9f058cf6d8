"""A whole grid's lifecycle on each EVM node: the oracle service places a customer's jobs, a
provider agent runs them on the local executor, the customer cancels one, tops one up and lets
one run out of credits; then the audit of the whole grid and the customer's account statement,
rebuilt from the chain alone, come out clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metascheduler.chain import JobStatus
from metascheduler.cli import app
from metascheduler.oracle.service import Oracle, build
from tests.conftest import ON_ANVIL_AND_HARDHAT, Grid
from tests.integration import oracle_kit
from tests.integration.agentkit import World, make_world, spec

pytestmark = pytest.mark.chain


def _until(w: World, oracle: Oracle, what: str, *want: tuple[int, JobStatus]) -> None:
    """Oracle and agent rounds until every (job, status) holds."""

    def reached() -> bool:
        oracle.sync_tick()
        return all(w.job(j).status is s for j, s in want)

    w.tick_until(what, reached, deadline_s=90)


@ON_ANVIL_AND_HARDHAT
def test_oracle_and_agent_carry_jobs_to_every_end(grid: Grid, tmp_path: Path) -> None:
    w = make_world(grid, tmp_path, local={"workdir": tmp_path / "local", "cpus": 4, "mem_mb": 4096})
    oracle = build(oracle_kit.settings(grid, f"sqlite:///{tmp_path / 'oracle.db'}"))
    oracle.start()
    try:
        finished, _ = w.request(spec("echo done"))
        cancelled, _ = w.request(spec("sleep 300"))
        starved, _ = w.request(spec("sleep 300"), escrow=60_000)  # 60 s at 1,000 units a second
        topped, _ = w.request(spec("sleep 300"), escrow=100_000)
        running = JobStatus.RUNNING
        _until(
            w,
            oracle,
            "the oracle to place every job and the agent to run them",
            (finished, JobStatus.FINISHED),
            (cancelled, running),
            (starved, running),
            (topped, running),
        )

        w.customer.cancel_job(cancelled)
        w.customer.top_up(topped, 200_000)  # 300 s in all
        w.tick_until(
            "the agent to extend the topped-up job", lambda: topped in w.rounds[-1].extended
        )

        w.advance_chain(120)  # past the starved job's 60 s, within the topped-up job's 300 s
        _until(w, oracle, "the starved job to be expired", (starved, JobStatus.OUT_OF_CREDITS))
        assert w.job(topped).status is running
        w.customer.cancel_job(topped)
        _until(w, oracle, "the agent to drop the cancelled jobs", (topped, JobStatus.CANCELLED))
    finally:
        oracle.close()
        w.agent.close()

    ends = {
        j: w.events(j, "JobEnded")[0].args["to"] for j in (finished, cancelled, starved, topped)
    }
    assert ends == {
        finished: JobStatus.FINISHED,
        cancelled: JobStatus.CANCELLED,
        starved: JobStatus.OUT_OF_CREDITS,
        topped: JobStatus.CANCELLED,
    }
    base = ["--rpc-url", grid.anvil.url, "--market", grid.deployment.market, "audit"]
    audit = CliRunner().invoke(app, [*base, "all", "--json"])
    assert audit.exit_code == 0, audit.output
    assert json.loads(audit.output.strip().splitlines()[-1])["ok"] is True
    customer = w.customer.sender_or_fail().address
    statement = CliRunner().invoke(app, [*base, "account", customer, "--json"])
    assert statement.exit_code == 0, statement.output
    got = json.loads(statement.output.strip().splitlines()[-1])
    assert got["ok"] is True and got["balance"] == got["rebuilt"]
    assert got["balance"] == w.reader.balance_of(customer)
