#!/usr/bin/env python3
"""Oracle throughput and latency on a real anvil with 1-second blocks of 30M gas.

Run as `.venv/bin/python scripts/bench_oracle.py` (about a minute and a half). Starts its own anvil,
deploys, registers two providers with room for every job, and measures:
  drain_jobs_per_s   N jobs (default 2,000, from many wallets) pending before the oracle starts;
                     placed jobs per second of wall time from the oracle's start until the last
                     placement is mined (seen by a block clock). 2,000 placements fit in one
                     block, so one drain ends at the first block after the oracle has sent them:
                     a matter of where the block boundary falls. The backlog is therefore
                     drained `--drains` times (default 5), each from the same chain state
                     (evm_revert) by a fresh oracle and store, started at a random phase of the
                     block timer; this key is N / the mean drain time
  drain_runs_over_ceiling, drain_min_over_ceiling  each drain's own figure over the ceiling
  p50_blocks/p99_blocks  jobs arriving at a steady rate (default 200/s): blocks from a job's
                     request to its placement
  gas_per_placement  gas of the oracle's placement transactions / jobs placed
  ceiling_jobs_per_s 30,000,000 / gas_per_placement
  first_block_s, chain_bound_drain_s, drain_over_chain_bound  the drain against the block clock:
                     the first block after the start comes by chance 0..1 s later, and even an
                     oracle placing every job at its start needs min_drain_blocks blocks from it
  oracle_sent_s      start to the last placement transaction of the drain being sent
Customers' transactions are signed locally and sent raw without waiting. The oracle runs in
this process (ingesting at 0 confirmations, ticking as fast as it can); the steady load comes
from a child process so the two do not share an interpreter lock. The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing as mp
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pydantic import SecretStr
from sqlalchemy import select
from web3 import Web3
from web3.types import RPCEndpoint

from metascheduler.chain import Market
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import Hardware, Prices
from metascheduler.devnet.anvil import dev_account, start_anvil
from metascheduler.devnet.wallets import Request, Wallets, send_steady
from metascheduler.oracle.service import Oracle, build, freeze_startup_heap
from metascheduler.oracle.settings import OracleSettings
from metascheduler.store.models import OracleAction

CREDIT = 10**6
GWEI = 10**9
BLOCK_GAS = 30_000_000
REQUEST_GAS = 160_000  # a requestJob of this spec uses ~120k; the limit is what packing counts
WALLET_SEED = "bench-wallet"


def spec(i: int) -> bytes:
    return (
        f'{{"command":["python","train.py"],"labels":[],"name":"bench-{i:07d}",'
        '"resources":{"cpus_per_task":2,"gpus":0,"mem_per_cpu_mb":1024,"tasks":1},'
        '"time_limit_minutes":60,"version":1}'
    ).encode()


def request(i: int) -> Request:
    """The i-th job the benchmark requests: 2 CPUs and 2 GB for a credit a minute at most."""
    return Request(spec(i), 2, 0, 2048, max_price_per_minute=CREDIT, escrow=5 * CREDIT)


class OracleLoop:
    """Runs the oracle's sync tick back to back in a thread (what APScheduler does at a short
    interval, without the scheduler's own latency)."""

    def __init__(self, oracle: Oracle):
        self.oracle = oracle
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.oracle.sync_tick()
            time.sleep(0.02)

    def placed(self) -> int:
        with self.oracle.sessions() as s:
            rows = s.scalars(select(OracleAction).where(OracleAction.kind == "place"))
            return sum(len(a.job_ids) - len(a.skipped or []) for a in rows if a.state == "mined")


class BlockClock:
    """Wall time at which each block was first seen (polled every 5 ms): when a placement was
    mined, as an observer sees it, not when the oracle got round to noticing.

    The polling runs in a child process so that it takes no interpreter time from the oracle,
    which runs in this one; time.monotonic() is the system's monotonic clock, shared by both."""

    def __init__(self, url: str):
        ctx = mp.get_context("fork")
        self._queue: Any = ctx.Queue()
        self._stop = ctx.Event()
        self._seen: dict[int, float] = {}
        self._proc = ctx.Process(target=_watch_blocks, args=(url, self._queue, self._stop))
        self._proc.daemon = True
        self._proc.start()

    @property
    def seen(self) -> dict[int, float]:
        while not self._queue.empty():
            n, t = self._queue.get()
            self._seen.setdefault(n, t)
        return self._seen

    def wait_for(self, block: int, timeout_s: float = 10.0) -> float:
        deadline = time.monotonic() + timeout_s
        while block not in self.seen:
            if time.monotonic() > deadline:
                raise SystemExit(f"block {block} was not seen within {timeout_s} s")
            time.sleep(0.01)
        return self.seen[block]

    def close(self) -> None:
        self._stop.set()
        self._proc.join(timeout=5)


def _watch_blocks(url: str, queue: Any, stop: Any) -> None:
    """Child process: reports each new block number with the time it was first seen."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=5)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})
    headers = {"Content-Type": "application/json"}
    last = -1
    while not stop.is_set():
        conn.request("POST", parts.path or "/", body, headers)
        n = int(json.loads(conn.getresponse().read())["result"], 16)
        if n > last:
            t = time.monotonic()
            for k in range(last + 1 if last >= 0 else n, n + 1):
                queue.put((k, t))
            last = n
        time.sleep(0.005)


def _rpc(w3: Web3, method: str, *params: Any) -> Any:
    resp = w3.provider.make_request(RPCEndpoint(method), list(params))
    if resp.get("error"):
        raise SystemExit(f"anvil refused {method}: {resp['error']}")
    return resp["result"]


@dataclass
class Drain:
    """One drain of the backlog, timed from the oracle's start (t0)."""

    t0: float
    drain_s: float  # to the moment the block with the last placement was seen
    first_block_s: float  # to the first block after the start
    oracle_sent_s: float  # to the last placement transaction being sent
    blocks: int  # blocks from the start to the one with the last placement
    block_seen: dict[int, float]  # k -> when the k-th block after the start was seen
    chain_bound_s: float = 0.0


def drain_once(
    oracle: Oracle, clock: BlockClock, market: Market, n: int
) -> tuple[OracleLoop, Drain]:
    """Starts the oracle on a backlog of n pending jobs; returns its running loop and the
    drain's timings once every job's placement is mined."""
    head = market.w3.eth.block_number
    clock.wait_for(head)  # the clock is watching before the start
    t0 = time.monotonic()
    t0_wall = time.time()
    oracle.start()
    loop = OracleLoop(oracle)
    loop.thread.start()
    while loop.placed() < n:
        time.sleep(0.05)  # the end is read from the block clock, not from this poll
    last_block = last_placement_block(market, head + 1)
    end = clock.wait_for(last_block)
    with oracle.sessions() as s:
        sent_ats = [a.sent_at for a in s.scalars(select(OracleAction)) if a.kind == "place"]
    seen = clock.seen
    return loop, Drain(
        t0=t0,
        drain_s=end - t0,
        first_block_s=seen[head + 1] - t0,
        oracle_sent_s=max(sent_ats) - t0_wall,
        blocks=last_block - head,
        block_seen={k - head: t for k, t in seen.items() if k > head},
    )


def last_placement_block(market: Market, from_block: int) -> int:
    logs = market.w3.eth.get_logs(
        {
            "address": market.address,
            "fromBlock": from_block,
            "toBlock": "latest",
            "topics": [market.events.topic("JobPlaced")],
        }
    )
    return max(int(lg["blockNumber"]) for lg in logs)


def wait_jobs(market: Market, n: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while market.job_count() < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {market.job_count()} of {n} requests mined in time")
        time.sleep(0.2)


def latency_blocks(market: Market, from_block: int, ids: set[int]) -> list[int]:
    w3 = market.w3
    req: dict[int, int] = {}
    placed: dict[int, int] = {}
    head = w3.eth.block_number
    for start in range(from_block, head + 1, 500):
        logs = w3.eth.get_logs(
            {
                "address": market.address,
                "fromBlock": start,
                "toBlock": min(head, start + 499),
                "topics": [[market.events.topic("JobRequested"), market.events.topic("JobPlaced")]],
            }
        )
        for lg in logs:
            ev = market.events.decode(lg)
            assert ev is not None
            jid = ev.args["jobId"]
            if jid in ids:
                (req if ev.name == "JobRequested" else placed)[jid] = ev.block_number
    return [placed[j] - req[j] for j in ids if j in placed and j in req]


def percentile(xs: list[int], p: float) -> float:
    s = sorted(xs)
    return float(s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2_000, help="jobs pending before the oracle")
    ap.add_argument("--wallets", type=int, default=100)
    ap.add_argument("--rate", type=float, default=200.0, help="steady arrivals per second")
    ap.add_argument("--steady-s", type=float, default=15.0, help="seconds of steady arrivals")
    ap.add_argument("--batch", type=int, default=0, help="jobs per placeJobs (0: auto)")
    ap.add_argument("--policy", default="best_fit")
    ap.add_argument(
        "--drains", type=int, default=5, help="drains of the backlog, each at a random block phase"
    )
    ap.add_argument("--seed", type=int, default=1, help="seeds the drains' start phases")
    ap.add_argument("--debug", action="store_true", help="log the oracle's tick timings")
    args = ap.parse_args()

    with start_anvil(block_time=1, gas_limit=BLOCK_GAS, accounts=4) as chain:
        w3 = connect(chain.url)
        admin_acct, oracle_acct = dev_account(0), dev_account(1)
        dep = Market.deploy(w3, admin_acct, oracle=oracle_acct.address)
        admin = Market(w3, dep.market, admin_acct)
        for i in (2, 3):
            prov = Market(w3, dep.market, dev_account(i))
            prov.register_provider(Hardware(1, 10**9, 0, 4 * 10**9), Prices(1_000 * i, 0, 0), [])
            admin.approve_provider(dev_account(i).address)
        market = Market(w3, dep.market)
        wallets = Wallets(market, args.wallets, seed=WALLET_SEED)
        n_steady = int(args.rate * args.steady_s)
        per_wallet = (args.jobs + n_steady) // args.wallets + 2
        wallets.fund(admin, per_wallet * 5 + 10)
        print(f"# {args.wallets} wallets funded; signing {args.jobs} requests", file=sys.stderr)
        for raw in wallets.requests(args.jobs, request, REQUEST_GAS):
            w3.eth.send_raw_transaction(raw)
        wait_jobs(market, args.jobs)
        steady_raws = wallets.requests(n_steady, request, REQUEST_GAS)  # signed now, sent later
        print(f"# {args.jobs} jobs pending", file=sys.stderr)
        if args.debug:
            import logging

            logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)d %(message)s")
            logging.getLogger("metascheduler.oracle").setLevel(logging.DEBUG)
            logging.getLogger("metascheduler.store.ingest").setLevel(logging.INFO)
        snapshot = _rpc(w3, "evm_snapshot")
        rng = random.Random(args.seed)
        tmp = Path(tempfile.mkdtemp(prefix="bench-oracle-"))
        drains: list[Drain] = []
        running: tuple[OracleLoop, Oracle, BlockClock] | None = None
        for k in range(max(1, args.drains)):
            if running:  # the same backlog again: the chain as it was, a fresh oracle and store
                running[0].stop.set()
                running[0].thread.join(timeout=30)
                running[1].close()
                running[2].close()
                if not _rpc(w3, "evm_revert", snapshot):
                    raise SystemExit("anvil refused to revert to the backlog's snapshot")
                snapshot = _rpc(w3, "evm_snapshot")
            # The 1-second block timer runs on its own: a random pause puts the oracle's start
            # at a fresh, uniform phase of it.
            time.sleep(rng.uniform(0.0, 1.0))
            settings = OracleSettings(
                rpc_url=chain.url,
                market_address=dep.market,
                confirmations=0,
                database_url=f"sqlite:///{tmp / f'oracle-{k}.db'}",
                private_key=SecretStr(oracle_acct.key.hex()),
                start_block=dep.block,
                policy=args.policy,
                batch_size=args.batch,
                max_txs_in_flight=256,
                getlogs_initial_range=10_000,
                log_level="WARNING",
            )
            oracle = build(settings)
            freeze_startup_heap()  # as `oracle run` does once the oracle is built
            clock = BlockClock(chain.url)
            loop, drain = drain_once(oracle, clock, market, args.jobs)
            running = (loop, oracle, clock)
            drains.append(drain)
            print(
                f"# drain {k + 1}/{args.drains}: {args.jobs} jobs in {drain.drain_s:.2f} s "
                f"(first block {drain.first_block_s:.2f} s after the start, "
                f"last placement sent at {drain.oracle_sent_s:.2f} s)",
                file=sys.stderr,
            )
        print("# steady load", file=sys.stderr)

        first_block = w3.eth.block_number
        child = mp.get_context("fork").Process(
            target=send_steady, args=(chain.url, steady_raws, args.rate)
        )
        child.start()
        child.join()
        target = args.jobs + n_steady
        deadline = time.monotonic() + 60
        while loop.placed() < target and time.monotonic() < deadline:
            time.sleep(0.1)
        loop.stop.set()
        clock.close()
        loop.thread.join(timeout=30)
        for n in range(first_block, w3.eth.block_number + 1 if args.debug else first_block):
            b = w3.eth.get_block(n)
            print(
                f"# block {n} gas_used={b['gasUsed']} base_fee_gwei={b['baseFeePerGas'] / GWEI:.2f}"
                f" txs={len(b['transactions'])}",
                file=sys.stderr,
            )
        ids = set(range(args.jobs + 1, target + 1))
        lat = latency_blocks(market, first_block, ids)
        with oracle.sessions() as s:
            acts = [
                a
                for a in s.scalars(select(OracleAction).where(OracleAction.kind == "place"))
                if a.state == "mined"
            ]
        gas = sum(a.gas_used or 0 for a in acts)
        placed = sum(len(a.job_ids) - len(a.skipped or []) for a in acts)
        oracle.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the drains' stores: tens of MB

    gas_per = gas / max(1, placed)
    ceiling = BLOCK_GAS / gas_per
    # Even an oracle that placed every job at its start could not finish before `min_blocks`
    # blocks of placements, counted from the first block after the start: `chain_bound_s`.
    min_blocks = math.ceil(args.jobs * gas_per / BLOCK_GAS)
    for d in drains:
        d.chain_bound_s = d.block_seen[min_blocks] - d.t0
    drain_s = statistics.fmean(d.drain_s for d in drains)
    drain = args.jobs / drain_s
    result = {
        "drain_jobs": args.jobs,
        "drain_s": round(drain_s, 3),
        "drain_jobs_per_s": round(drain, 1),
        "steady_rate": args.rate,
        "steady_jobs": n_steady,
        "steady_placed": len(lat),
        "p50_blocks": percentile(lat, 50) if lat else None,
        "p99_blocks": percentile(lat, 99) if lat else None,
        "mean_blocks": round(statistics.fmean(lat), 3) if lat else None,
        "gas_per_placement": round(gas_per, 1),
        "ceiling_jobs_per_s": round(ceiling, 1),
        "drain_over_ceiling": round(drain / ceiling, 3),
        "first_block_s": round(statistics.fmean(d.first_block_s for d in drains), 3),
        "oracle_sent_s": round(max(d.oracle_sent_s for d in drains), 3),
        "drain_blocks": max(d.blocks for d in drains),
        "min_drain_blocks": min_blocks,
        "chain_bound_drain_s": round(statistics.fmean(d.chain_bound_s for d in drains), 3),
        "drain_over_chain_bound": round(
            statistics.fmean(d.chain_bound_s for d in drains) / drain_s, 3
        ),
        "placement_txs": len(acts),
        "batch": oracle.batch_size(),
        "drains": len(drains),
        "drain_runs_over_ceiling": [round(args.jobs / d.drain_s / ceiling, 3) for d in drains],
        "drain_runs_first_block_s": [round(d.first_block_s, 3) for d in drains],
        "drain_min_over_ceiling": round(min(args.jobs / d.drain_s for d in drains) / ceiling, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
