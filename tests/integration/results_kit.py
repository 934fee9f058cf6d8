"""Shared pieces of the results tests: a real SeaweedFS for the session, the API on uvicorn over
it and the test's fresh deployment, and a job placed on a provider and running."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from eth_account.signers.local import LocalAccount

from metascheduler.api import ApiSettings, create_app
from metascheduler.chain import Market, Terms
from metascheduler.chain.types import Hardware, Prices
from metascheduler.devnet.anvil import dev_account, free_port
from metascheduler.devnet.objectstore import ObjectStore, start_object_store
from metascheduler.results.customer import customer_public_key, find_request
from metascheduler.results.digest import result_digest
from metascheduler.results.http import ResultsApi
from metascheduler.results.keys import new_job_key, wrap
from metascheduler.results.logchain import ChunkSealer, Deployment, LogRecord
from metascheduler.spec import JobSpec, Resources, encode_spec
from metascheduler.store import upgrade_to_head
from tests.conftest import Grid

PRICE = 6_000
ESCROW = 5_000_000
CHAIN_ID = 31337


@pytest.fixture(scope="session")
def object_store() -> Iterator[ObjectStore]:
    """One SeaweedFS for the session (each test's deployment has its own object keys)."""
    with tempfile.TemporaryDirectory(prefix="ms-seaweedfs-") as tmp:
        root = Path(tmp)
        with start_object_store(root / "data", log_path=root / "weed.log") as store:
            yield store


def api_settings(grid: Grid, store: ObjectStore, db_dir: Path, **kw: object) -> ApiSettings:
    url = f"sqlite:///{db_dir / 'store.db'}"
    upgrade_to_head(url)
    fields: dict[str, object] = {
        "database_url": url,
        "rpc_url": grid.anvil.url,
        "market_address": grid.deployment.market,
        "chain_id": CHAIN_ID,
        "object_store_endpoint": store.endpoint,
        "object_store_access_key": store.access_key,
        "object_store_secret_key": store.secret_key,
        "object_store_bucket": "results-test",
    }
    return ApiSettings(**{**fields, **kw})  # type: ignore[arg-type]


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(settings: ApiSettings, port: int | None = None) -> Served:
    """The API on uvicorn in a thread of this process."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    return Served(f"http://127.0.0.1:{port}", server, thread)


@dataclass
class RunningJob:
    job_id: int
    provider: LocalAccount
    customer: LocalAccount
    other: LocalAccount
    deployment: Deployment
    customer_pub: bytes
    provider_market: Market
    customer_market: Market


def running_job(grid: Grid, *, start: bool = True) -> RunningJob:
    """A job of dev account 6 placed on provider dev account 2 (accepted and started)."""
    provider, customer, other = dev_account(2), dev_account(6), dev_account(7)
    adm, oracle = grid.market(grid.admin), grid.market(grid.oracle)
    prov, cust = grid.market(provider), grid.market(customer)
    prov.register_provider(Hardware(1, 8, 0, 16_384), Prices(PRICE, 0, 0), [])
    adm.approve_provider(provider.address)
    adm.mint(customer.address, 10 * ESCROW)
    cust.approve(10 * ESCROW)
    cust.deposit(10 * ESCROW)
    spec = JobSpec(
        name="results",
        resources=Resources(tasks=1, cpus_per_task=1, mem_per_cpu_mb=256),
        command=["true"],
    )
    raw = encode_spec(spec)
    job_id = cust.request_job(
        raw, spec.cpus, spec.gpus, spec.mem_mb, max_price_per_minute=10 * PRICE, escrow=ESCROW
    )
    oracle.place_job(
        job_id, provider.address, Terms.for_spec(raw, spec.cpus, spec.gpus, spec.mem_mb, 10 * PRICE)
    )
    if start:
        prov.accept_job(job_id)
        prov.start_job(job_id)
    head = int(prov.w3.eth.block_number)
    req = find_request(prov, job_id, from_block=grid.deployment.block, to_block=head)
    return RunningJob(
        job_id,
        provider,
        customer,
        other,
        Deployment(CHAIN_ID, grid.deployment.market),
        customer_public_key(prov, req.tx_hash, customer.address),
        prov,
        cust,
    )


def ship_and_complete(job: RunningJob, api_url: str, tmp_path: Path) -> str:
    """The placed provider ships a two-line log ("hello from the grid", "bye") and one output
    file (result.txt), then completes the job with their digest, which it returns (0x hex)."""
    key = new_job_key()
    sealer = ChunkSealer(job.provider, job.deployment, job.job_id, key, wrap(job.customer_pub, key))
    client = ResultsApi(api_url)
    client.append(job.job_id, sealer.seal([LogRecord(1.0, "stdout", "hello from the grid")]))
    final = sealer.seal([LogRecord(2.0, "stdout", "bye")], final=True, exit_code=0)
    client.append(job.job_id, final)
    src = tmp_path / "shipped"
    src.mkdir()
    (src / "result.txt").write_text("42\n")
    packed = client.pack_and_upload(
        job.provider,
        job.deployment,
        job.job_id,
        src,
        tmp_path / "shipped.enc",
        job_key=key,
        wrapped_key=wrap(job.customer_pub, key),
    )
    digest = result_digest(packed.sha256, final.digest_hex())
    job.provider_market.complete_job(job.job_id, 0, digest)
    return "0x" + digest.hex()
