#!/usr/bin/env python3
"""Reading a grid's history back from the chain: the audit's and the SDK's speed.

Run as `.venv/bin/python scripts/bench_audit.py` (about a minute). Starts its own anvil, deploys,
and builds a history of N jobs (default 2,000, from 100 wallets) that all ran on one provider:
requested, placed in batches, accepted and started, then completed after 60 s of chain time.
Then it times what an auditor and a customer read:
  get_jobs_s         Market.get_jobs on every job (JSON-RPC batches of 100)
  get_job_one_s      the same one getJob at a time, on the first 200 jobs, scaled to N
  logs_s, events     every log of the market, read and decoded (audit.logs.LogReader)
  audit_all_s        `metascheduler audit all`: every bill replayed, every balance rebuilt
  audit_ok           whether that audit found the history sound (it must)
  jobs_per_s         N / audit_all_s
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_oracle import BLOCK_GAS, CREDIT, REQUEST_GAS, WALLET_SEED, request, spec, wait_jobs
from metascheduler.audit import audit_all
from metascheduler.audit.logs import LogReader
from metascheduler.chain import Market, Terms
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import Hardware, Placement, Prices, ProviderAction, ProviderStep
from metascheduler.devnet.anvil import dev_account, mine_after, start_anvil
from metascheduler.devnet.wallets import Wallets

PER_TX = 100  # placements, and provider steps, per transaction


def build_history(market: Market, admin: Market, oracle: Market, prov: Market, n: int) -> None:
    wallets = Wallets(market, 100, seed=WALLET_SEED)
    wallets.fund(admin, n // 100 * 5 + 10)
    for raw in wallets.requests(n, request, REQUEST_GAS):
        market.w3.eth.send_raw_transaction(raw)
    wait_jobs(market, n)
    provider = prov.sender_or_fail().address
    ids = list(range(1, n + 1))
    for i in range(0, n, PER_TX):
        part = ids[i : i + PER_TX]
        # Job i was requested with bench_oracle's spec(i - 1): the terms it committed to.
        placements = [
            Placement(jid, provider, Terms.for_spec(spec(jid - 1), 2, 0, 2048, CREDIT))
            for jid in part
        ]
        oracle.place_jobs(placements)
        steps = [ProviderStep(j, ProviderAction.ACCEPT) for j in part]
        steps += [ProviderStep(j, ProviderAction.START) for j in part]
        for k in range(0, len(steps), PER_TX):
            prov.provider_batch(steps[k : k + PER_TX])
    mine_after(market.w3, 60)
    for i in range(0, n, PER_TX):
        prov.provider_batch([ProviderStep(j, ProviderAction.COMPLETE) for j in ids[i : i + PER_TX]])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2_000, help="jobs in the history")
    args = ap.parse_args()
    n = args.jobs

    with start_anvil(gas_limit=BLOCK_GAS, accounts=4) as chain:
        w3 = connect(chain.url)
        admin_acct, oracle_acct, prov_acct = dev_account(0), dev_account(1), dev_account(2)
        dep = Market.deploy(w3, admin_acct, oracle=oracle_acct.address)
        admin = Market(w3, dep.market, admin_acct)
        oracle = Market(w3, dep.market, oracle_acct)
        prov = Market(w3, dep.market, prov_acct)
        prov.register_provider(Hardware(1, 10**9, 0, 4 * 10**9), Prices(1_000, 0, 0), [])
        admin.approve_provider(prov_acct.address)
        market = Market(w3, dep.market)
        print(f"# building a history of {n} jobs", file=sys.stderr)
        build_history(market, admin, oracle, prov, n)
        head = w3.eth.block_number

        t = time.perf_counter()
        views = market.get_jobs(range(1, n + 1))
        get_jobs_s = time.perf_counter() - t
        sample = list(range(1, min(n, 200) + 1))
        t = time.perf_counter()
        for jid in sample:
            market.get_job(jid)
        get_job_one_s = (time.perf_counter() - t) * n / len(sample)

        reader = LogReader(w3, market.address, market.events)
        t = time.perf_counter()
        events = reader.fetch(dep.block, head)
        logs_s = time.perf_counter() - t

        print("# auditing", file=sys.stderr)
        t = time.perf_counter()
        report = audit_all(market, from_block=dep.block)
        audit_all_s = time.perf_counter() - t

    finished = sum(1 for v in views.values() if v.status.name == "FINISHED")
    result = {
        "jobs": n,
        "finished": finished,
        "events": len(events),
        "get_jobs_s": round(get_jobs_s, 3),
        "get_job_one_s": round(get_job_one_s, 3),
        "logs_s": round(logs_s, 3),
        "audit_all_s": round(audit_all_s, 3),
        "audit_ok": report.ok,
        "jobs_per_s": round(n / audit_all_s, 1),
    }
    print(json.dumps(result))
    return 0 if report.ok and finished == n else 1


if __name__ == "__main__":
    sys.exit(main())
