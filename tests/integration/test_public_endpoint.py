"""The grid's services through a proxy that answers as public RPC endpoints do (eth_getLogs
capped in blocks and in results, HTTP 429 now and then, batches refused, receipts null for a
while after a send), in front of the session's real anvil. The chain layer splits, halves,
waits, falls back to single calls and polls again: the services see none of it. The results
(the API finding an ended job's customer, the customer's `job logs` and `job outputs`) too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import pytest
from typer.testing import CliRunner

from metascheduler.chain import JobStatus
from metascheduler.chain.types import Hardware, Prices
from metascheduler.cli import app
from metascheduler.devnet.anvil import LocalNode
from metascheduler.devnet.objectstore import ObjectStore
from metascheduler.devnet.rpcproxy import PublicEndpoint, RpcProxy
from metascheduler.oracle.service import build
from tests.conftest import Grid
from tests.integration import oracle_kit as kit
from tests.integration.agentkit import World, make_world, spec
from tests.integration.results_kit import (
    api_settings,
    object_store,
    running_job,
    serve,
    ship_and_complete,
)

pytestmark = pytest.mark.chain
__all__ = ["object_store"]


@dataclass
class _Endpoint:
    """The node as the services see it: only its URL, the proxy's."""

    url: str


@pytest.fixture
def proxy(grid: Grid) -> Iterator[RpcProxy]:
    with RpcProxy(grid.anvil.url, PublicEndpoint.typical()) as p:
        yield p


@pytest.fixture
def public(grid: Grid, proxy: RpcProxy) -> Grid:
    """The test's grid with every service and reader pointed at the proxy."""
    return replace(grid, anvil=cast(LocalNode, _Endpoint(proxy.url)))


def _every_limit_met(proxy: RpcProxy) -> None:
    s = proxy.stats
    assert s.refused_ranges and s.rate_limited and s.refused_batches and s.null_receipts, s


def _run_jobs(grid: Grid, tmp: Path) -> tuple[World, list[int]]:
    """A local-executor agent through a full job lifecycle, and the jobs it ran."""
    w = make_world(grid, tmp)
    jobs = [w.submit(spec(f"echo {i}")) for i in range(3)]
    for j in jobs:
        assert w.until_status(j, JobStatus.FINISHED).status == JobStatus.FINISHED
    return w, jobs


@pytest.fixture
def finished(public: Grid, tmp_path: Path) -> tuple[World, list[int]]:
    """Jobs run by an agent that talks to the chain through the proxy."""
    return _run_jobs(public, tmp_path)


@pytest.fixture
def history(grid: Grid, tmp_path: Path) -> tuple[World, list[int]]:
    """Jobs run straight on the node: a history for the readers below to read through it."""
    return _run_jobs(grid, tmp_path)


def test_oracle_ingests_and_places_through_a_public_endpoint(
    grid: Grid, public: Grid, proxy: RpcProxy, tmp_path: Path
) -> None:
    prov = kit.provider(grid, 2, Hardware(1, 16, 0, 32_768), Prices(1_000, 0, 10), ["x86_64"])
    cust = kit.customer(grid, 3)
    jobs = [kit.request(cust, f"j{i}") for i in range(12)]
    oracle = build(kit.settings(public, f"sqlite:///{tmp_path / 'oracle.db'}"))
    oracle.start()
    for _ in range(3):
        oracle.sync_tick()
    m = grid.market()
    for j in jobs:
        view = m.get_job(j)
        assert (view.status, view.provider) == (
            JobStatus.META_SCHEDULED,
            prov.sender_or_fail().address,
        ), j
    oracle.close()
    s = proxy.stats
    assert s.refused_ranges and s.refused_results and s.rate_limited and s.refused_batches, s


def test_agent_runs_jobs_through_a_public_endpoint(
    finished: tuple[World, list[int]], proxy: RpcProxy
) -> None:
    w, jobs = finished
    for j in jobs:
        (ended,) = w.events(j, "JobEnded")
        assert ended.args["exitCode"] == 0
    _every_limit_met(proxy)


def test_audit_all_through_a_public_endpoint(
    history: tuple[World, list[int]], public: Grid, proxy: RpcProxy
) -> None:
    base = ["--rpc-url", public.anvil.url, "--market", public.deployment.market]
    out = CliRunner().invoke(app, [*base, "audit", "all", "--json"])
    assert out.exit_code == 0, out.output
    verdict = json.loads(out.output.strip().splitlines()[-1])
    assert verdict["ok"] is True, verdict
    assert proxy.stats.refused_ranges and proxy.stats.refused_results


def test_cli_lists_jobs_and_history_through_a_public_endpoint(
    history: tuple[World, list[int]], public: Grid, proxy: RpcProxy
) -> None:
    _, jobs = history
    base = ["--rpc-url", public.anvil.url, "--market", public.deployment.market]
    out = CliRunner().invoke(app, [*base, "job", "list", "--all", "--json"])
    assert out.exit_code == 0, out.output
    listed = json.loads(out.output.strip().splitlines()[-1])["jobs"]
    assert sorted(j["job_id"] for j in listed) == sorted(jobs)
    out = CliRunner().invoke(app, [*base, "job", "history", str(jobs[0]), "--json"])
    assert out.exit_code == 0, out.output
    timeline = json.loads(out.output.strip().splitlines()[-1])["timeline"]
    assert "FINISHED" in json.dumps(timeline)
    assert proxy.stats.refused_ranges and proxy.stats.refused_batches


@pytest.mark.results
def test_job_logs_and_outputs_through_a_public_endpoint(
    grid: Grid, proxy: RpcProxy, object_store: ObjectStore, tmp_path: Path
) -> None:
    """An ended job's record no longer names its customer: the API finds them in the job's
    request event, through the endpoint's capped eth_getLogs, before it lets them read."""
    job = running_job(grid)
    served = serve(api_settings(grid, object_store, tmp_path, rpc_url=proxy.url))
    try:
        committed = ship_and_complete(job, served.url, tmp_path)
        base = ["--rpc-url", proxy.url, "--market", grid.deployment.market]
        base += ["--api-url", served.url, "--key-env", "MS_TEST_CUSTOMER_KEY"]
        env = {"MS_TEST_CUSTOMER_KEY": "0x" + bytes(job.customer.key).hex()}
        refused_before = proxy.stats.refused_ranges
        res = CliRunner().invoke(app, [*base, "job", "logs", str(job.job_id), "--json"], env=env)
        assert res.exit_code == 0, res.output
        lines = [json.loads(line) for line in res.stdout.splitlines()]
        assert [o["line"] for o in lines if "line" in o] == ["hello from the grid", "bye"]
        dest = tmp_path / "got"
        res = CliRunner().invoke(
            app, [*base, "job", "outputs", str(job.job_id), "-o", str(dest), "--json"], env=env
        )
        assert res.exit_code == 0, res.output
        got = json.loads(res.stdout.splitlines()[-1])
        assert got["files"] == ["result.txt"] and got["digest_checked"] is True
        assert got["digest"] == committed and (dest / "result.txt").read_text() == "42\n"
    finally:
        served.stop()
    assert proxy.stats.refused_ranges > refused_before
