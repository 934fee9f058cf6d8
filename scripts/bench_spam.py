#!/usr/bin/env python3
"""A funded job behind a flood of spam, at full size: blocks from its request to its placement.

Run as `.venv/bin/python scripts/bench_spam.py` (over 40 minutes on 2 cores shared with other
work: signing 100,000 requests takes about 130 s of CPU, anvil mines them slowly). Starts
its own anvil (1-second blocks of 1,000M gas; anvil put 500 requests in each, so the flood
takes 200 blocks), deploys, sets the request fee (default 0.01 credit), registers one provider, and
runs the real oracle (SQLite store) in this process, ticking back to back as `oracle run` does at a
short interval. Then:
  spam_jobs          requests (default 100,000) from many wallets, each with a 1-unit escrow,
                     which pays no minimum run: the oracle must not offer them to any provider.
                     They are signed before the clock starts and sent as JSON-RPC batches.
  submit_s, mined_s, ingested_s  from the first send to the last sent, to the last mined, and
                     to the oracle's store holding every spam job
  oracle_tick_ms_p50/p99/max, ticks  the oracle's sync ticks while the whole flood is pending
                     (ingested, unplaced): each reads its window (20,000 jobs by priority)
  funded_placed_after_blocks  a customer's job with a 10-credit escrow, requested once the
                     flood is ingested: the placement's block number minus the request's
  funded_placed_after_s  wall time from the request's receipt to the placement being seen
  funded_request_mined_s, blocks_during_flood_ticks  how long the node took to mine the funded
                     request, and how many blocks it made in the seconds of ticks before it
  funded_sent_after_s, funded_sent_after_blocks  from the request's receipt to the oracle's
                     placement being recorded as sent (its action log, polled every 50 ms), in
                     seconds and in the node's head block minus the request's: the oracle's share
                     of funded_placed_after_blocks; the rest is the node's inclusion
  spam_cost_credits  what the spammer paid and cannot get back: the request fees (read as the
                     market's accrued fees); the 1-unit escrows are refunded on cancel
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pydantic import SecretStr
from sqlalchemy import func, select

from metascheduler import billing
from metascheduler.chain import Market
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import Hardware, Prices
from metascheduler.devnet.anvil import dev_account, start_anvil
from metascheduler.devnet.wallets import Wallets
from metascheduler.oracle.service import MAX_PENDING_PER_TICK, Oracle, build, freeze_startup_heap
from metascheduler.oracle.settings import OracleSettings
from metascheduler.spec import encode_spec, validate_spec
from metascheduler.store.models import Job, OracleAction

CREDIT = billing.UNITS_PER_CREDIT
BLOCK_GAS = 1_000_000_000
REQUEST_GAS = 200_000  # a requestJob of this spec uses ~130k; the limit is what packing counts
PRICE = 1_000  # the provider's price per CPU-minute
SPEC = encode_spec(
    validate_spec({"name": "spam", "command": ["true"], "resources": {"mem_per_cpu_mb": 1024}})
)


def spam_requests(wallets: Wallets, market: Market, n: int) -> list[bytes]:
    """n signed requests with a 1-unit escrow, round-robin over the wallets."""
    data = market.contract.encode_abi("requestJob", args=[1, 0, 1024, CREDIT, 1, SPEC])
    count = len(wallets.accounts)
    return [wallets.sign(k % count, market.address, data, REQUEST_GAS) for k in range(n)]


def send_batches(url: str, raws: list[bytes], batch: int) -> None:
    """eth_sendRawTransaction in JSON-RPC batches of `batch`, over one connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)
    headers = {"Content-Type": "application/json"}
    for start in range(0, len(raws), batch):
        body = [
            {
                "jsonrpc": "2.0",
                "id": k,
                "method": "eth_sendRawTransaction",
                "params": ["0x" + r.hex()],
            }
            for k, r in enumerate(raws[start : start + batch], start)
        ]
        conn.request("POST", parts.path or "/", json.dumps(body), headers)
        replies = json.loads(conn.getresponse().read())
        errors = [r["error"] for r in replies if "error" in r]
        if errors:
            raise SystemExit(f"anvil refused {len(errors)} requests, first: {errors[0]}")


class TickLoop:
    """The oracle's sync tick back to back in a thread, each tick's start and length kept."""

    def __init__(self, oracle: Oracle):
        self.oracle = oracle
        self.ticks: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            self.oracle.sync_tick()
            self.ticks.append((t0, time.monotonic() - t0))
            time.sleep(0.02)

    def since(self, t: float, until: float = float("inf")) -> list[float]:
        return [d for start, d in self.ticks if t <= start < until]


def jobs_in_store(oracle: Oracle) -> int:
    with oracle.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


def wait(what: str, cond: Any, timeout_s: float, pause_s: float = 0.5) -> float:
    """Waits until cond() holds; returns when (time.monotonic())."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {timeout_s:g} s")
        time.sleep(pause_s)
    return time.monotonic()


def placement_sent(oracle: Oracle, job_id: int) -> bool:
    """Has the oracle sent (or mined) a placement of the job? From its action log."""
    with oracle.sessions() as s:
        actions = s.scalars(
            select(OracleAction.job_ids)
            .where(OracleAction.kind == "place", OracleAction.state.in_(("sent", "mined")))
            .order_by(OracleAction.id.desc())
            .limit(16)
        )
        return any(job_id in ids for ids in actions)


def placed_block(market: Market, job_id: int, from_block: int) -> int | None:
    logs = market.w3.eth.get_logs(
        {
            "address": market.address,
            "fromBlock": from_block,
            "toBlock": "latest",
            "topics": [market.events.topic("JobPlaced"), f"0x{job_id:064x}"],
        }
    )
    return int(logs[0]["blockNumber"]) if logs else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spam", type=int, default=100_000, help="spam requests")
    ap.add_argument("--wallets", type=int, default=100, help="spammer wallets")
    ap.add_argument(
        "--fee", type=int, default=CREDIT // 100, help="request fee in units (0.01 credit)"
    )
    ap.add_argument("--batch", type=int, default=500, help="transactions per JSON-RPC batch")
    ap.add_argument(
        "--flood-ticks-s", type=float, default=20.0, help="seconds of ticks on the whole flood"
    )
    args = ap.parse_args()
    # Each spam job entering the window is logged as unplaceable: 20,000 lines, not figures.
    logging.getLogger("metascheduler").setLevel(logging.ERROR)

    with start_anvil(block_time=1, gas_limit=BLOCK_GAS, accounts=4) as chain:
        w3 = connect(chain.url)
        admin_acct, oracle_acct = dev_account(0), dev_account(1)
        dep = Market.deploy(w3, admin_acct, oracle=oracle_acct.address)
        admin = Market(w3, dep.market, admin_acct)
        admin.set_request_fee(args.fee)
        prov = Market(w3, dep.market, dev_account(2))
        prov.register_provider(Hardware(1, 64, 0, 262_144), Prices(PRICE, 0, 0), [])
        admin.approve_provider(dev_account(2).address)
        customer = Market(w3, dep.market, dev_account(3))
        admin.mint(dev_account(3).address, 100 * CREDIT)
        customer.approve(2**256 - 1)
        customer.deposit(100 * CREDIT)
        market = Market(w3, dep.market)

        wallets = Wallets(market, args.wallets, seed="bench-spam")
        per_wallet = -(-args.spam // args.wallets)
        wallets.fund(admin, per_wallet * (args.fee + 1) // CREDIT + 2)
        t_sign = time.monotonic()
        raws = spam_requests(wallets, market, args.spam)
        sign_s = time.monotonic() - t_sign
        print(f"# {args.spam} spam requests signed in {sign_s:.1f} s", file=sys.stderr)
        fees_before = int(market.contract.functions.accruedFees().call())

        tmp = Path(tempfile.mkdtemp(prefix="bench-spam-"))
        settings = OracleSettings(
            rpc_url=chain.url,
            market_address=dep.market,
            confirmations=0,
            database_url=f"sqlite:///{tmp / 'oracle.db'}",
            private_key=SecretStr(oracle_acct.key.hex()),
            start_block=dep.block,
            max_txs_in_flight=256,
            getlogs_initial_range=10_000,
            log_level="ERROR",
        )
        oracle = build(settings)
        freeze_startup_heap()
        oracle.start()
        loop = TickLoop(oracle)
        loop.thread.start()

        first_block = w3.eth.block_number
        t0 = time.monotonic()
        send_batches(chain.url, raws, args.batch)
        submit_s = time.monotonic() - t0
        print(f"# sent in {submit_s:.1f} s", file=sys.stderr)
        total = args.spam
        mined = wait("the flood to be mined", lambda: market.job_count() >= total, 3600)
        print(f"# mined {mined - t0:.1f} s after the first send", file=sys.stderr)
        ingested = wait(
            "the oracle to ingest the flood", lambda: jobs_in_store(oracle) >= total, 3600
        )
        print(f"# ingested {ingested - t0:.1f} s after the first send", file=sys.stderr)
        block_before = w3.eth.block_number
        time.sleep(args.flood_ticks_s)  # ticks on the whole flood, before the funded job
        blocks_during_ticks = w3.eth.block_number - block_before

        # Sent, then waited for as long as the node takes: on a loaded machine anvil's blocks
        # come late behind a flood (the sender's own 120 s wait gave up in one run).
        t_send = time.monotonic()
        pending = customer.send_request_job(
            SPEC, 1, 0, 1024, max_price_per_minute=CREDIT, escrow=10 * CREDIT
        )
        receipt = w3.eth.wait_for_transaction_receipt(pending.tx_hash, timeout=3600)
        request_mined_s = time.monotonic() - t_send
        (event,) = [e for e in customer.decode_events(receipt) if e.name == "JobRequested"]
        funded = int(event.args["jobId"])
        requested = int(receipt["blockNumber"])
        t_req = time.monotonic()
        sent: list[tuple[float, int]] = []  # (when, head block) the placement was first seen sent

        def placed_yet() -> bool:
            if not sent and placement_sent(oracle, funded):
                sent.append((time.monotonic(), w3.eth.block_number))
            return placed_block(market, funded, requested) is not None

        t_placed = wait("the funded job's placement", placed_yet, 600, pause_s=0.05)
        placed = placed_block(market, funded, requested)
        assert placed is not None
        loop.stop.set()
        loop.thread.join(timeout=120)
        ticks = loop.since(ingested, t_placed)
        placements = market.w3.eth.get_logs(
            {
                "address": market.address,
                "fromBlock": first_block,
                "toBlock": "latest",
                "topics": [market.events.topic("JobPlaced")],
            }
        )
        spam_placed = sum(1 for lg in placements if int(lg["topics"][1].hex(), 16) != funded)
        fees = int(market.contract.functions.accruedFees().call()) - fees_before - args.fee
        oracle.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the store of 100,000 jobs: hundreds of MB

    result = {
        "spam_jobs": total,
        "request_fee_units": args.fee,
        "window": MAX_PENDING_PER_TICK,
        "block_time_s": 1,
        "block_gas": BLOCK_GAS,
        "sign_s": round(sign_s, 1),
        "submit_s": round(submit_s, 1),
        "mined_s": round(mined - t0, 1),
        "ingested_s": round(ingested - t0, 1),
        "ticks": len(ticks),
        "oracle_tick_ms_p50": round(statistics.median(ticks) * 1000, 1) if ticks else None,
        "oracle_tick_ms_p99": round(percentile_f(ticks, 99) * 1000, 1) if ticks else None,
        "oracle_tick_ms_max": round(max(ticks) * 1000, 1) if ticks else None,
        "funded_placed_after_blocks": placed - requested,
        "funded_placed_after_s": round(t_placed - t_req, 2),
        "funded_request_mined_s": round(request_mined_s, 1),
        "funded_sent_after_s": round(sent[0][0] - t_req, 2) if sent else None,
        "funded_sent_after_blocks": sent[0][1] - requested if sent else None,
        "blocks_during_flood_ticks": blocks_during_ticks,
        "spam_placed": spam_placed,
        "spam_cost_credits": fees / CREDIT,
    }
    print(json.dumps(result))
    return 0


def percentile_f(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
