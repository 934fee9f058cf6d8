"""Results end to end with the real agent on the local backend, a real anvil and a real SeaweedFS:
a job's lines reach its customer's `Client.logs`, its outputs come back byte for byte and match
the digest, cancelled and out-of-credits jobs keep their lines up to the kill, and neither an API
outage nor an agent killed with SIGKILL loses or doubles a line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from metascheduler.agent.shipping import ResultsShipper
from metascheduler.chain import JobStatus, Market
from metascheduler.chain.rpc import connect
from metascheduler.cli import app
from metascheduler.client import Client
from metascheduler.devnet.objectstore import ObjectStore
from metascheduler.results.digest import result_digest
from tests.conftest import Grid
from tests.integration.agentkit import (
    CREDIT,
    World,
    make_world,
    slurm_conf_or_skip,
    spec,
    start_agent_process,
    write_toml,
)
from tests.integration.results_kit import Served, api_settings, object_store, serve

pytestmark = [pytest.mark.chain, pytest.mark.results]
__all__ = ["object_store"]


@pytest.fixture
def api(grid: Grid, object_store: ObjectStore, tmp_path: Path) -> Iterator[Served]:
    served = serve(api_settings(grid, object_store, tmp_path / "api-db"))
    try:
        yield served
    finally:
        served.stop()


def customer_client(w: World, api_url: str) -> Client:
    return Client(
        Market(
            connect(w.grid.anvil.url), w.grid.deployment.market, w.customer.sender_or_fail().account
        ),
        api_url=api_url,
    )


def ship_until_done(w: World, job_id: int, deadline_s: float = 60) -> str:
    """Rounds (and shipping passes, unless the shipping thread runs) until the job's results
    are all acknowledged."""
    shipper = w.agent.results
    assert shipper is not None

    def done() -> str | None:
        if not shipper.waiting_is_useful(job_id):
            shipper.step()
        return shipper.result_digest(job_id)

    return w.tick_until(f"the results of job {job_id}", done, deadline_s)


def job_lines(client: Client, job_id: int) -> tuple[list[tuple[str, str, bool]], object]:
    stream = client.logs(job_id)
    return [(r.stream, r.line, r.agent) for r in stream], stream


def backend_settings(backend: str, tmp: Path) -> dict[str, Any]:
    if backend == "local":
        return {}
    conf = slurm_conf_or_skip()
    return {
        "backend": "slurm",
        "slurm": {"partition": "alpha", "output_dir": str(tmp / "slurm-out"), "slurm_conf": conf},
    }


@pytest.mark.parametrize("backend", ["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def test_hello_lines_and_outputs_reach_the_customer(
    grid: Grid, api: Served, tmp_path: Path, backend: str
) -> None:
    w = make_world(grid, tmp_path, api_url=api.url, **backend_settings(backend, tmp_path))
    assert w.agent.results is not None
    w.agent.results.start()  # as `agent run` does: the COMPLETE then waits for the digest
    job_id = w.submit(
        spec(
            "echo hello from the grid; echo oops >&2; mkdir -p $MS_OUTPUT_DIR/sub; "
            "printf 'result 42\\n' > $MS_OUTPUT_DIR/sub/result.txt; exit 3"
        )
    )
    digest = ship_until_done(w, job_id)
    assert w.until_status(job_id, JobStatus.FAILED).status is JobStatus.FAILED
    client = customer_client(w, api.url)
    lines, stream = job_lines(client, job_id)
    assert ("stdout", "hello from the grid", False) in lines
    assert ("stderr", "oops", False) in lines
    notes = [line for s, line, agent in lines if agent]
    assert any(n.startswith(f"queued on {backend}") for n in notes)
    assert any(n.startswith("outputs stored: 1 files") for n in notes)
    assert stream.final and stream.exit_code == 3  # type: ignore[attr-defined]

    got = client.outputs(job_id, tmp_path / "got")
    assert (tmp_path / "got" / "sub" / "result.txt").read_text() == "result 42\n"
    assert got.files == ["sub/result.txt"]
    assert got.digest == digest
    # The completion committed it on chain, and the CLI checked the archive against it.
    assert got.committed == digest
    w.agent.results.stop()
    assert "0x" + result_digest(bytes.fromhex(got.sha256[2:]), got.log_head).hex() == digest


@pytest.mark.parametrize("end", ["cancel", "out-of-credits"])
def test_killed_jobs_keep_their_lines_up_to_the_kill(
    grid: Grid, api: Served, tmp_path: Path, end: str
) -> None:
    # A provider with no minimum run takes a job funded for seconds, so its escrow runs dry soon.
    w = make_world(grid, tmp_path, api_url=api.url, min_run_s=0)
    # The chain's clock runs minutes ahead of the host's, as after any test that moved it: the
    # agent must not take the gap for a start lag (which raised the time limit by as much, and
    # left the job running past its escrow).
    w.advance_chain(600)
    # 3,000 units at 1,000 units per CPU-second: funded for 3 s of running.
    escrow = 3_000 if end == "out-of-credits" else CREDIT
    job_id, _ = w.request(spec("echo before the kill; sleep 120; echo never printed"), escrow)
    w.place(job_id)
    client = customer_client(w, api.url)
    shipper = w.agent.results
    assert shipper is not None

    def seen() -> bool:
        shipper.step()
        return ("stdout", "before the kill", False) in job_lines(client, job_id)[0]

    w.tick_until("the first line to reach the customer", seen)
    if end == "cancel":
        w.customer.cancel_job(job_id)
        want = JobStatus.CANCELLED
    else:
        w.advance_chain(10)
        want = JobStatus.OUT_OF_CREDITS
    ship_until_done(w, job_id)
    assert w.job(job_id).status is want
    lines, stream = job_lines(client, job_id)
    texts = [line for _, line, _ in lines]
    assert texts.count("before the kill") == 1
    assert "never printed" not in texts
    assert any(line.startswith("killed:") for line in texts)
    assert stream.final  # type: ignore[attr-defined]


COUNT_SCRIPT = "for i in $(seq 1 {n}); do echo line $i; sleep {pause}; done"


def _counted(lines: list[tuple[str, str, bool]]) -> list[str]:
    return [line for stream, line, agent in lines if not agent and stream == "stdout"]


def test_an_api_outage_loses_and_doubles_no_line(
    grid: Grid, object_store: ObjectStore, tmp_path: Path
) -> None:
    settings = api_settings(grid, object_store, tmp_path / "api-db")
    served = serve(settings)
    port = int(served.url.rsplit(":", 1)[1])
    w = make_world(grid, tmp_path, api_url=served.url)
    job_id = w.submit(spec(COUNT_SCRIPT.format(n=40, pause=0.05)))
    shipper = w.agent.results
    assert shipper is not None
    w.until_status(job_id, JobStatus.RUNNING)
    shipper.step()
    served.stop()  # the API goes down while the job prints
    for _ in range(15):
        w.tick()
        shipper.step()
        time.sleep(0.2)
    served = serve(settings, port=port)
    try:
        shipper._retry_at.clear()  # no need to wait out the backoff in a test
        ship_until_done(w, job_id)
        lines, _ = job_lines(customer_client(w, served.url), job_id)
        assert _counted(lines) == [f"line {i}" for i in range(1, 41)]
    finally:
        served.stop()


def test_an_agent_killed_mid_job_loses_and_doubles_no_line(
    grid: Grid, api: Served, tmp_path: Path
) -> None:
    w = make_world(grid, tmp_path, api_url=api.url)
    w.agent.close()
    config = write_toml(w.settings, tmp_path / "agent.toml")
    job_id = w.submit(spec(COUNT_SCRIPT.format(n=60, pause=0.1)))
    client = customer_client(w, api.url)
    proc = start_agent_process(config, tmp_path / "agent1.log")
    try:
        deadline = time.monotonic() + 60
        while len(_counted(job_lines(client, job_id)[0])) < 10:
            assert proc.poll() is None, (tmp_path / "agent1.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "agent1.log").read_text()
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(10)
    proc = start_agent_process(config, tmp_path / "agent2.log")
    try:
        deadline = time.monotonic() + 90
        while True:
            lines, stream = job_lines(client, job_id)
            if stream.final:  # type: ignore[attr-defined]
                break
            assert proc.poll() is None, (tmp_path / "agent2.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "agent2.log").read_text()
            time.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(20)
    assert _counted(lines) == [f"line {i}" for i in range(1, 61)]


@pytest.mark.parametrize("lost", ["state", "state-and-track"])
def test_an_agent_killed_before_setting_up_a_jobs_results_ships_them_after_restart(
    grid: Grid, api: Served, tmp_path: Path, lost: str
) -> None:
    """The agent queued the job, then died before the shipper's first look at it (so no
    state.json; with "state-and-track" also before it recorded the job at all): the restarted
    agent still ships the job's lines and closes its log. Before, the job was known only to the
    dead process's memory and its log never got a final chunk."""
    w = make_world(grid, tmp_path, api_url=api.url)
    job_id = w.submit(spec("echo before the kill"))
    shipper = w.agent.results
    assert shipper is not None
    w.tick_until(
        "the job queued", lambda: getattr(w.agent.state.jobs.get(job_id), "native_id", None)
    )
    spool_dir = shipper.root / str(job_id)
    assert not (spool_dir / "state.json").exists()  # the shipper never looked
    if lost == "state-and-track":
        (spool_dir / "tracked.json").unlink()
    # A new process: a new shipper over the same disk, as `agent run` builds it.
    sender = w.agent.market.sender_or_fail()
    w.agent.results = ResultsShipper(
        w.settings, w.agent.market, sender.account, sender.chain_id, w.agent.backend
    )
    w.agent.resume_results()
    ship_until_done(w, job_id)
    lines, stream = job_lines(customer_client(w, api.url), job_id)
    assert _counted(lines) == ["before the kill"]
    assert stream.final  # type: ignore[attr-defined]


def _intercept(shipper: ResultsShipper, hook: Any) -> None:
    """Routes the shipper's API requests through `hook(send, method, path, **kw)`."""
    send = shipper.api._http.request

    def request(method: str, path: str, **kw: Any) -> httpx.Response:
        return hook(send, method, path, **kw)

    shipper.api._http.request = request  # type: ignore[assignment]


def test_an_upload_recorded_whose_answer_was_lost_is_not_taken_for_a_failure(
    grid: Grid, api: Served, tmp_path: Path
) -> None:
    """The API records the outputs, and its answer never reaches the agent (a timeout under
    load, or a kill right after). Before, the agent uploaded anew, the API refused a second
    upload of stored outputs, and the job completed with no archive in its digest: the stored
    outputs no longer matched the chain."""
    w = make_world(grid, tmp_path, api_url=api.url)
    shipper = w.agent.results
    assert shipper is not None
    lost: list[int] = []

    def hook(send: Any, method: str, path: str, **kw: Any) -> httpx.Response:
        resp = send(method, path, **kw)
        if path.endswith("/outputs/complete") and not lost:
            lost.append(resp.status_code)
            raise httpx.ReadTimeout("the answer was lost")
        return resp

    _intercept(shipper, hook)
    job_id = w.submit(spec("echo kept > $MS_OUTPUT_DIR/o.txt"))
    digest = ship_until_done(w, job_id)
    assert lost == [200]  # the API did record the first upload
    got = customer_client(w, api.url).outputs(job_id, tmp_path / "got")
    assert (tmp_path / "got" / "o.txt").read_text() == "kept\n"
    assert got.digest == digest


@pytest.mark.parametrize("status", [401, 403, 404, 409])
def test_a_refusal_the_api_may_change_its_mind_on_is_tried_again(
    grid: Grid, api: Served, tmp_path: Path, status: int
) -> None:
    """A 4xx that may come from the API's passing view of the chain (a job read before its
    placement, or on a reorganised fork) delays the job's results, and does not leave them on
    the provider's disk for good (as it did: its log never closed)."""
    w = make_world(grid, tmp_path, api_url=api.url)
    shipper = w.agent.results
    assert shipper is not None
    refused: list[str] = []

    def hook(send: Any, method: str, path: str, **kw: Any) -> httpx.Response:
        if method == "POST" and not refused:
            refused.append(path)
            return httpx.Response(status, json={"detail": "not yet"})
        return send(method, path, **kw)

    _intercept(shipper, hook)
    job_id = w.submit(spec("echo refused once"))
    ship_until_done(w, job_id)
    assert refused
    lines, stream = job_lines(customer_client(w, api.url), job_id)
    assert _counted(lines) == ["refused once"]
    assert stream.final  # type: ignore[attr-defined]


def test_cli_follows_the_log_exits_with_the_job_code_and_fetches_outputs(
    grid: Grid, api: Served, tmp_path: Path
) -> None:
    w = make_world(grid, tmp_path, api_url=api.url)
    w.agent.close()
    proc = start_agent_process(write_toml(w.settings, tmp_path / "agent.toml"), tmp_path / "a.log")
    job_id = w.submit(
        spec("echo first; sleep 2; echo second >&2; echo out > $MS_OUTPUT_DIR/o.txt; exit 5")
    )
    customer_key = "0x" + bytes(w.customer.sender_or_fail().account.key).hex()
    env = {"MS_TEST_CUSTOMER_KEY": customer_key, "MS_TEST_OTHER_KEY": "0x" + "11" * 32}
    base = [
        "--rpc-url",
        grid.anvil.url,
        "--market",
        grid.deployment.market,
        "--api-url",
        api.url,
        "--key-env",
        "MS_TEST_CUSTOMER_KEY",
    ]
    try:
        res = CliRunner().invoke(
            app, [*base, "job", "logs", str(job_id), "--follow", "--json"], env=env
        )
    finally:
        proc.terminate()
        proc.wait(20)
    assert res.exit_code == 5, res.output
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    job_lines_ = [(o["stream"], o["line"]) for o in objs if "line" in o and not o["agent"]]
    assert job_lines_ == [("stdout", "first"), ("stderr", "second")]
    assert objs[-1] == {"ok": True, "job_id": job_id, "ended": True, "exit_code": 5}

    res = CliRunner().invoke(
        app, [*base, "job", "outputs", str(job_id), "-o", str(tmp_path / "o"), "--json"], env=env
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["files"] == ["o.txt"]
    assert (tmp_path / "o" / "o.txt").read_text() == "out\n"

    other = [*base[:-1], "MS_TEST_OTHER_KEY"]
    for cmd in (["logs", str(job_id)], ["outputs", str(job_id), "-o", str(tmp_path / "x")]):
        res = CliRunner().invoke(app, [*other, "job", *cmd, "--json"], env=env)
        assert res.exit_code == 1, res.output
        assert "is not the customer of job" in json.loads(res.stdout.splitlines()[-1])["error"]
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_a_job_whose_results_cannot_be_set_up_is_retried_with_a_backoff(
    grid: Grid, api: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Setting a job's results up reads its request from the chain: through an RPC cut every
    shipping pass (0.1 s) failed again and logged a warning, hundreds of lines a minute."""
    w = make_world(grid, tmp_path, api_url=api.url)
    shipper = w.agent.results
    assert shipper is not None
    calls = 0

    def unreachable(job_id: int, native: str) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("RPC unreachable")

    monkeypatch.setattr(shipper, "_begin", unreachable)
    shipper.track(99, "1")
    with caplog.at_level("WARNING", logger="metascheduler.agent.shipping"):
        for _ in range(20):
            shipper.step()
    assert calls < 5, calls  # waited out its backoff between attempts
    warned = [r for r in caplog.records if "cannot set up its results" in r.getMessage()]
    assert len(warned) == 1
    assert shipper.busy() == [99], "still to be set up"
