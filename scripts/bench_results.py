#!/usr/bin/env python3
"""Results end to end: how fast a job's lines reach its customer, and its outputs the store.

Run as `.venv/bin/python scripts/bench_results.py` (a few minutes). Starts its own anvil,
SeaweedFS, the API and one provider agent (local backend) as processes, as `make demo` does,
and plays the customer and the oracle itself:
  log_p50_ms, log_p99_ms  a job prints its clock time on each of --lines lines, 100 ms apart;
                          the customer's `Client.logs(follow=True)` notes when each arrives
                          (provider read, sealed, sent, stored, long-poll answered, decrypted)
  log_lines_per_s         a chatty job prints --chatty lines at once; lines over the time from
                          the first to the last reaching the customer
  pack_s, upload_s        seconds of packing and encrypting alone, and of packing, encrypting
                          and uploading as the agent does (parts go up while it packs)
  upload_mb_per_s         --mb of outputs (random bytes, so zstd cannot shrink them) packed,
                          encrypted and uploaded through the API's pre-signed multipart URLs,
                          as the agent does, over their plain size
  raw_put_mb_per_s        the same number of bytes put straight into the same store with boto3
  upload_over_raw         the ratio of the two
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import boto3
import httpx
from botocore.config import Config

from metascheduler.agent.settings import AgentSettings
from metascheduler.chain import JobStatus, Market, Terms
from metascheduler.chain.rpc import connect
from metascheduler.client import Client
from metascheduler.devnet.anvil import dev_account, free_port, start_anvil
from metascheduler.devnet.objectstore import start_object_store
from metascheduler.devnet.procs import Service, python_module
from metascheduler.results import archive
from metascheduler.results.customer import customer_public_key, find_request
from metascheduler.results.http import ResultsApi
from metascheduler.results.keys import new_job_key, wrap
from metascheduler.results.logchain import Deployment
from metascheduler.spec import encode_spec, parse_spec
from metascheduler.store import upgrade_to_head

CREDIT = 1_000_000
PRICE = 60_000


def _toml(values: dict[str, Any]) -> str:
    lines, tables = [], []
    for k, v in values.items():
        if isinstance(v, dict):
            tables.append(f"\n[{k}]")
            tables += [f"{kk} = {json.dumps(vv)}" for kk, vv in v.items()]
        else:
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines + tables) + "\n"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Grid:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.anvil = start_anvil(accounts=6, log_path=root / "anvil.log")
        w3 = connect(self.anvil.url)
        self.dep = Market.deploy(w3, dev_account(0), oracle=dev_account(1).address)
        self.admin = Market(w3, self.dep.market, dev_account(0))
        self.oracle = Market(w3, self.dep.market, dev_account(1))
        self.customer = Market(w3, self.dep.market, dev_account(3))
        self.admin.mint(dev_account(3).address, 1000 * CREDIT)
        self.customer.approve(2**256 - 1)
        self.customer.deposit(1000 * CREDIT)
        self.store = start_object_store(root / "seaweedfs", log_path=root / "seaweedfs.log")
        db = f"sqlite:///{root / 'grid.db'}"
        upgrade_to_head(db)
        self.api_url = f"http://127.0.0.1:{free_port()}"
        base: dict[str, Any] = {
            "rpc_url": self.anvil.url,
            "market_address": self.dep.market,
            "confirmations": 0,
        }
        api: dict[str, Any] = {
            **base,
            "database_url": db,
            "port": int(self.api_url.rsplit(":", 1)[1]),
            "object_store_endpoint": self.store.endpoint,
        }
        (root / "api.toml").write_text(_toml(api))
        keys = {
            "MS_OBJECT_STORE_ACCESS_KEY": self.store.access_key,
            "MS_OBJECT_STORE_SECRET_KEY": self.store.secret_key,
        }
        self.services = [
            Service(
                "api",
                python_module("metascheduler.api", str(root / "api.toml")),
                root / "api.log",
                keys,
            ).start()
        ]
        agent: dict[str, Any] = {
            **base,
            "start_block": self.dep.block,
            "api_url": self.api_url,
            "backend": "local",
            "local": {"workdir": str(root / "work"), "cpus": 2, "mem_mb": 4096},
            "hardware": {"nodes": 1, "cpus": 2, "gpus": 0, "mem_mb": 4096},
            "prices": {"cpu": PRICE, "gpu": 0, "gb": 0},
            "state_dir": str(root / "agent"),
            "poll_interval_s": 0.5,
        }
        AgentSettings(**agent)  # refuse a typo here rather than in the child
        (root / "agent.toml").write_text(_toml(agent))
        key = {"MS_PRIVATE_KEY": "0x" + bytes(dev_account(2).key).hex()}
        self.services.append(
            Service(
                "agent",
                python_module("metascheduler.agent", "--config", str(root / "agent.toml")),
                root / "agent.log",
                key,
            ).start()
        )
        deadline = time.monotonic() + 60
        while self.admin.get_provider(dev_account(2).address)[0].name == "NONE":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the agent did not register; see {root / 'agent.log'}")
            time.sleep(0.3)
        self.admin.approve_provider(dev_account(2).address)
        while True:
            try:
                if httpx.get(f"{self.api_url}/api/health", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not answer; see {root / 'api.log'}")
            time.sleep(0.2)
        self.client = Client(self.customer, api_url=self.api_url)

    def run(self, script: str) -> int:
        spec = parse_spec(json.dumps({"name": "bench", "script": script}))
        data = encode_spec(spec)
        job_id = self.customer.request_job(
            data,
            spec.cpus,
            spec.gpus,
            spec.mem_mb,
            max_price_per_minute=10 * PRICE,
            escrow=10 * CREDIT,
        )
        terms = Terms.for_spec(data, spec.cpus, spec.gpus, spec.mem_mb, 10 * PRICE)
        self.oracle.place_job(job_id, dev_account(2).address, terms)
        return job_id

    def stop(self) -> None:
        for svc in reversed(self.services):
            svc.stop()
        self.store.stop()
        self.anvil.stop()


def log_latency(grid: Grid, lines: int) -> list[float]:
    job_id = grid.run(f'for i in $(seq 1 {lines}); do echo "$(date +%s.%N)"; sleep 0.1; done')
    out = []
    for rec in grid.client.logs(job_id, follow=True, timeout_s=300):
        if not rec.agent:
            out.append((time.time() - float(rec.line)) * 1000)
    return out


def log_rate(grid: Grid, lines: int) -> tuple[int, float]:
    job_id = grid.run(f"sleep 2; seq 1 {lines}")
    first = last = 0.0
    count = 0
    for rec in grid.client.logs(job_id, follow=True, timeout_s=600):
        if rec.agent:
            continue
        last = time.perf_counter()
        first = first or last
        count += 1
    return count, last - first


def upload(grid: Grid, mb: int, tmp: Path) -> tuple[float, float, float]:
    """Seconds to pack and encrypt `mb` MB, and then to upload them, as the agent does; seconds
    of a raw put of as many bytes."""
    job_id = grid.run("sleep 600")
    deadline = time.monotonic() + 60
    while grid.customer.get_job(job_id).status is not JobStatus.RUNNING:
        if time.monotonic() > deadline:
            raise RuntimeError("the upload job did not start")
        time.sleep(0.2)
    src = tmp / "outputs"
    src.mkdir()
    with open(src / "data.bin", "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(2**20))
    market = grid.customer
    req = find_request(
        market, job_id, from_block=grid.dep.block, to_block=market.w3.eth.block_number
    )
    pub = customer_public_key(market, req.tx_hash, req.customer)
    dep = Deployment(int(market.w3.eth.chain_id), market.address)
    provider = dev_account(2)
    key = new_job_key()
    t = time.perf_counter()
    archive.pack(
        src, tmp / "p.enc", deployment=dep, job_id=job_id, job_key=key, wrapped_key=wrap(pub, key)
    )
    pack_s = time.perf_counter() - t
    # As the agent does: parts go up while the archive is packed.
    t = time.perf_counter()
    ResultsApi(grid.api_url).pack_and_upload(
        provider, dep, job_id, src, tmp / "o.enc", job_key=key, wrapped_key=wrap(pub, key)
    )
    upload_s = time.perf_counter() - t
    grid.customer.cancel_job(job_id)

    s3 = boto3.client(
        "s3",
        endpoint_url=grid.store.endpoint,
        aws_access_key_id=grid.store.access_key,
        aws_secret_access_key=grid.store.secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4"),
    )
    t = time.perf_counter()
    s3.upload_file(str(src / "data.bin"), "metascheduler-results", "raw/data.bin")
    raw_s = time.perf_counter() - t
    return pack_s, upload_s, raw_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200, help="lines of the latency job")
    ap.add_argument("--chatty", type=int, default=300_000, help="lines of the chatty job")
    ap.add_argument("--mb", type=int, default=200, help="MB of outputs to upload")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-results-"))
    grid = Grid(root)
    try:
        print("# log latency", file=sys.stderr)
        lat = log_latency(grid, args.lines)
        print("# chatty job", file=sys.stderr)
        count, span = log_rate(grid, args.chatty)
        print(f"# {args.mb} MB of outputs", file=sys.stderr)
        pack_s, upload_s, raw_s = upload(grid, args.mb, root)
    finally:
        grid.stop()
    result = {
        "log_lines": len(lat),
        "log_p50_ms": round(statistics.median(lat), 1),
        "log_p99_ms": round(percentile(lat, 0.99), 1),
        "log_max_ms": round(max(lat), 1),
        "chatty_lines": count,
        "log_lines_per_s": round(count / span) if span > 0 else None,
        "upload_mb": args.mb,
        "pack_s": round(pack_s, 2),
        "upload_s": round(upload_s, 2),
        "upload_mb_per_s": round(args.mb / upload_s, 1),
        "raw_put_mb_per_s": round(args.mb / raw_s, 1),
        "upload_over_raw": round(raw_s / upload_s, 3),
    }
    print(json.dumps(result))
    ok = len(lat) == args.lines and count == args.chatty
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
