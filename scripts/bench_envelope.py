#!/usr/bin/env python3
"""How long a container job takes to start, from a cold and a warm image cache, and what the
sandbox adds to a job's start.

Run as root: `.venv/bin/python scripts/bench_envelope.py` (about half a minute; needs podman,
runc, busybox-static and the job user: `bash scripts/sandbox.sh install`). Starts its own anvil
with 1-second blocks, deploys, runs one provider agent (local backend, podman) in this process,
serves a busybox image padded to `--image-mb` from a local HTTP server, and measures:

  uncached_start_s    from the block that mined the job's ACCEPT to the block that mined its
                      START (block timestamps), for the first job with the image: the image is
                      fetched, checked and loaded while the job is SCHEDULED
  cached_start_s      the same for a second job with the same image (from the cache)
  block_time_s        anvil's block interval: the start figures count whole blocks
  image_mb            the archive's size
  sandbox_overhead_s  a no-op job's submit-to-end time on the local backend, sandboxed minus
                      unconfined (median of `--runs` each)
  sandboxed_noop_s, unconfined_noop_s  the two medians

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pydantic import SecretStr

from metascheduler.agent.backends import BackendJob
from metascheduler.agent.backends.local import LocalBackend
from metascheduler.agent.backends.sandbox import SandboxPolicy
from metascheduler.agent.envelope.runtime import Podman
from metascheduler.agent.service import build
from metascheduler.agent.settings import (
    AgentSettings,
    HardwareSettings,
    LocalSettings,
    PriceSettings,
    StagingSettings,
)
from metascheduler.chain import Market
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import JobStatus, ProviderStatus, Terms
from metascheduler.devnet.anvil import dev_account, start_anvil
from metascheduler.devnet.images import busybox_archive, file_server, missing, sha256
from metascheduler.spec import encode_spec, validate_spec

CREDIT = 10**6
BLOCK_TIME_S = 1


def noop_seconds(backend: LocalBackend, job_id: int) -> float:
    job = BackendJob(job_id, validate_spec({"name": "noop", "command": ["true"]}), 60)
    t = time.perf_counter()
    native = backend.submit(job)
    while not backend.status([native])[native].status.is_terminal:
        time.sleep(0.005)
    return time.perf_counter() - t


def sandbox_overhead(root: Path, runs: int) -> tuple[float, float]:
    confined = LocalBackend(root / "confined", cpus=2, mem_mb=2000, sandbox=SandboxPolicy())
    unconfined = LocalBackend(root / "unconfined", cpus=2, mem_mb=2000)
    times: dict[str, list[float]] = {"confined": [], "unconfined": []}
    for i in range(runs):  # interleaved: a busy moment weighs on both
        times["confined"].append(noop_seconds(confined, i + 1))
        times["unconfined"].append(noop_seconds(unconfined, i + 1))
    return statistics.median(times["confined"]), statistics.median(times["unconfined"])


def status_block(market: Market, job_id: int, to: JobStatus) -> int:
    """Timestamp of the block whose JobStatusChanged moved the job to ``to``."""
    w3 = market.w3
    for raw in w3.eth.get_logs(
        {
            "address": market.address,
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [None, f"0x{job_id:064x}"],
        }
    ):
        event = market.events.decode(raw)
        if event is not None and event.name == "JobStatusChanged" and event.args["to"] == to:
            return int(w3.eth.get_block(raw["blockNumber"])["timestamp"])
    raise RuntimeError(f"job {job_id} never reached {to.name}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-mb", type=float, default=5.0, help="size of the image archive")
    ap.add_argument("--runs", type=int, default=7, help="no-op jobs each way for the overhead")
    args = ap.parse_args()
    why = missing()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="ms-bench-envelope-", dir="/tmp"))
    root.chmod(0o755)
    plain = busybox_archive()
    image = busybox_archive(pad_bytes=max(0, int(args.image_mb * 2**20) - len(plain)))
    result: dict[str, Any] = {
        "image_mb": round(len(image) / 2**20, 2),
        "block_time_s": BLOCK_TIME_S,
    }
    try:
        with file_server() as server, start_anvil(block_time=BLOCK_TIME_S, accounts=6) as chain:
            server.files["/bench.tar"] = image
            ref = f"{server.url('/bench.tar')}#sha256={sha256(image)}"
            w3 = connect(chain.url)
            admin_acct, oracle_acct, prov, cust = (dev_account(i) for i in range(4))
            dep = Market.deploy(w3, admin_acct, oracle=oracle_acct.address)
            admin, oracle = Market(w3, dep.market, admin_acct), Market(w3, dep.market, oracle_acct)
            customer, reader = Market(w3, dep.market, cust), Market(w3, dep.market)
            admin.mint(cust.address, 100 * CREDIT)
            customer.approve(2**256 - 1)
            customer.deposit(100 * CREDIT)
            settings = AgentSettings(
                rpc_url=chain.url,
                market_address=dep.market,
                private_key=SecretStr("0x" + bytes(prov.key).hex()),
                confirmations=0,
                start_block=dep.block,
                backend="local",
                local=LocalSettings(workdir=root / "agent" / "jobs", cpus=2, mem_mb=2048),
                hardware=HardwareSettings(nodes=1, cpus=2, gpus=0, mem_mb=2048),
                prices=PriceSettings(cpu=1_000, gpu=0, gb=0),
                state_dir=root / "agent",
                staging=StagingSettings(runtime="podman", cache_dir=root / "images"),
                poll_interval_s=0.1,
            )
            agent = build(settings)
            if agent.start() is ProviderStatus.REGISTERED:
                admin.approve_provider(prov.address)
            stop = threading.Event()

            def run_agent() -> None:
                while not stop.is_set():
                    agent.tick()
                    stop.wait(settings.poll_interval_s)

            thread = threading.Thread(target=run_agent, daemon=True)
            thread.start()
            try:
                for key in ("uncached_start_s", "cached_start_s"):
                    spec = validate_spec(
                        {
                            "version": 2,
                            "name": key,
                            "command": ["true"],
                            "resources": {"mem_per_cpu_mb": 256},
                            "container": {"image": ref},
                        }
                    )
                    data = encode_spec(spec)
                    job_id = customer.request_job(
                        data, 1, 0, 256, max_price_per_minute=10_000, escrow=CREDIT
                    )
                    oracle.place_job(job_id, prov.address, Terms.for_spec(data, 1, 0, 256, 10_000))
                    deadline = time.monotonic() + 120
                    while reader.get_job(job_id).status not in (
                        JobStatus.RUNNING,
                        JobStatus.FINISHED,
                        JobStatus.FAILED,
                    ):
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"job {job_id} did not start within 120 s")
                        time.sleep(0.1)
                    accepted = status_block(reader, job_id, JobStatus.SCHEDULED)
                    started = status_block(reader, job_id, JobStatus.RUNNING)
                    result[key] = started - accepted
                result["image_fetches"] = server.hits.get("/bench.tar", 0)
            finally:
                stop.set()
                thread.join(30)
                agent.close()
                Podman().forget(sha256(image))  # its padding is random: never used again
        confined, unconfined = sandbox_overhead(root / "overhead", args.runs)
        result["sandboxed_noop_s"] = round(confined, 3)
        result["unconfined_noop_s"] = round(unconfined, 3)
        result["sandbox_overhead_s"] = round(confined - unconfined, 3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
