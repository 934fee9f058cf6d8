#!/usr/bin/env python3
"""Gas of a job's whole lifecycle on a real anvil, from transaction receipts.

Run as `.venv/bin/python scripts/bench_gas.py`. Starts its own anvil, deploys, and measures
steady-state lifecycles (never the first job ever, never one-time set-up) of a job whose spec is
300 bytes. The last line is one JSON object:
  lifecycle_gas          request + place + accept + start + complete, one transaction each
  batched_gas_per_job    the same per job when the oracle and the provider batch 100 jobs per
                         transaction (requests stay one per job)
  cancel_lifecycle_gas   request + place + accept + start + cancel (while running)
  ooc_lifecycle_gas      request + place + accept + start + expire (out of credits)
  deposit_gas            one deposit into a balance that is already non-zero
  spec_bytes             the spec's size
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from metascheduler.chain import Market, Terms
from metascheduler.chain.rpc import connect
from metascheduler.chain.types import Hardware, Placement, Prices, ProviderAction, ProviderStep
from metascheduler.devnet.anvil import dev_account, start_anvil

CREDIT = 10**6
CPUS, GPUS, MEM_MB, MAX_PRICE = 4, 0, 8192, CREDIT


def spec_of_size(n: int, tag: int) -> bytes:
    """A canonical-looking JSON spec of exactly n bytes (padded in a note field)."""
    head = (
        '{"command":["python","train.py","--epochs","10"],"env":{"OMP_NUM_THREADS":"4"},'
        f'"labels":["x86_64"],"name":"bench-{tag:06d}","note":"'
    )
    tail = '","resources":{"cpus_per_task":4,"gpus":0,"mem_per_cpu_mb":2048,"tasks":1}}'
    pad = n - len(head) - len(tail)
    assert pad >= 0
    return (head + "x" * pad + tail).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100, help="jobs per batched transaction")
    ap.add_argument("--spec-bytes", type=int, default=300)
    args = ap.parse_args()

    with start_anvil(accounts=10) as chain:
        w3 = connect(chain.url)
        admin, oracle_acct, prov_acct, cust_acct = (dev_account(i) for i in range(4))
        dep = Market.deploy(w3, admin, oracle=oracle_acct.address)
        adm = Market(w3, dep.market, admin)
        oracle = Market(w3, dep.market, oracle_acct)
        prov = Market(w3, dep.market, prov_acct)
        cust = Market(w3, dep.market, cust_acct)

        prov.register_provider(
            Hardware(4, 512, 8, 2_097_152), Prices(1_000, 50_000, 100), ["x86_64"]
        )
        adm.approve_provider(prov_acct.address)
        adm.mint(cust_acct.address, 10_000_000 * CREDIT)
        cust.approve(2**256 - 1)
        cust.deposit(1_000_000 * CREDIT)

        tag = iter(range(1_000_000))

        def request(escrow: int = 100 * CREDIT) -> tuple[int, Terms, int]:
            spec = spec_of_size(args.spec_bytes, next(tag))
            p = cust.send_request_job(
                spec, CPUS, GPUS, MEM_MB, max_price_per_minute=MAX_PRICE, escrow=escrow
            )
            r = cust.sender_or_fail().wait(p)
            job_id = next(
                e.args["jobId"] for e in cust.decode_events(r) if e.name == "JobRequested"
            )
            return job_id, Terms.for_spec(spec, CPUS, GPUS, MEM_MB, MAX_PRICE), r["gasUsed"]

        def run_to_start(escrow: int = 100 * CREDIT) -> tuple[int, int]:
            job_id, terms, gas = request(escrow)
            gas += oracle.place_job(job_id, prov_acct.address, terms)["gasUsed"]
            gas += prov.accept_job(job_id)["gasUsed"]
            gas += prov.start_job(job_id)["gasUsed"]
            return job_id, gas

        def advance(seconds: int) -> None:
            w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]

        # Warm-up: the first job ever pays one-time costs (first balances, first counters).
        job_id, _ = run_to_start()
        advance(600)
        prov.complete_job(job_id, 0)

        job_id, gas = run_to_start()
        advance(600)
        lifecycle = gas + prov.complete_job(job_id, 0)["gasUsed"]

        job_id, gas = run_to_start()
        advance(300)
        cancel_lifecycle = gas + cust.cancel_job(job_id)["gasUsed"]

        job_id, gas = run_to_start(escrow=2_000)  # at 4,800 units/min: 25 s of funding
        advance(60)
        receipt = cust.expire_jobs([job_id])
        assert not cust.skipped(receipt), cust.skipped(receipt)
        ooc_lifecycle = gas + receipt["gasUsed"]

        n = args.batch
        total = 0
        placements = []
        for _ in range(n):
            job_id, terms, gas = request()
            total += gas
            placements.append(Placement(job_id, prov_acct.address, terms))
        ids = [p.job_id for p in placements]
        for receipt in (
            oracle.place_jobs(placements),
            prov.provider_batch([ProviderStep(i, ProviderAction.ACCEPT) for i in ids]),
            prov.provider_batch([ProviderStep(i, ProviderAction.START) for i in ids]),
        ):
            assert not oracle.skipped(receipt), oracle.skipped(receipt)
            total += receipt["gasUsed"]
        advance(600)
        receipt = prov.provider_batch([ProviderStep(i, ProviderAction.COMPLETE) for i in ids])
        assert not prov.skipped(receipt)
        total += receipt["gasUsed"]

        deposit_gas = cust.deposit(10 * CREDIT)["gasUsed"]

    result = {
        "lifecycle_gas": lifecycle,
        "batched_gas_per_job": round(total / n),
        "cancel_lifecycle_gas": cancel_lifecycle,
        "ooc_lifecycle_gas": ooc_lifecycle,
        "deposit_gas": deposit_gas,
        "spec_bytes": args.spec_bytes,
        "batch": n,
    }
    per_job = result["batched_gas_per_job"]
    print(f"steady-state lifecycle: {lifecycle:,} gas; batched x{n}: {per_job:,} gas/job")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
