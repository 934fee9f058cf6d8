"""The customer's side of results: each sampled job's log and outputs read back through the
API and SeaweedFS with the customer's wallet, as `metascheduler job logs` and `job outputs` do,
and set beside what the job printed and wrote (known from its spec's name)."""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount

from metascheduler.audit.model import JobAudit
from metascheduler.chain import Market
from metascheduler.chain.rpc import connect
from metascheduler.client import Client
from metascheduler.results.errors import Tampered

#: Readers at once: each read is a few HTTP calls and a decryption.
THREADS = 4
#: How long after the drain a job's final log chunk may still be on its way.
FINAL_WAIT_S = 180.0


@dataclass
class ReadbackReport:
    checked: int = 0
    #: lines a job printed that its customer did not read back
    logs_lost: int = 0
    #: lines the customer read more often than the job printed them
    logs_doubled: int = 0
    #: outputs whose stored object does not match the digest on chain, or not what the job wrote
    outputs_mismatch: int = 0
    #: jobs whose results could not be read at all (the reason in `details`)
    unreadable: int = 0
    details: list[str] = field(default_factory=list)


def read_back(
    rpc_url: str,
    market: str,
    api_url: str,
    audits: dict[int, JobAudit],
    expected: dict[int, tuple[list[str], str]],
    accounts: dict[str, LocalAccount],
    sample: int | None,
    seed: int,
    work: Path,
) -> ReadbackReport:
    """`expected`: job id -> (lines printed, output file's text), for jobs that ran to their
    end (FINISHED or FAILED by their own exit); `accounts`: customer address (lower) -> wallet."""
    ids = sorted(j for j in expected if audits[j].status in ("FINISHED", "FAILED"))
    if sample is not None and len(ids) > sample:
        ids = sorted(random.Random(seed).sample(ids, sample))
    rep = ReadbackReport(checked=len(ids))
    deadline = time.monotonic() + FINAL_WAIT_S
    clients: dict[str, Client] = {}

    def client(addr: str) -> Client:
        if addr not in clients:
            m = Market(connect(rpc_url), market, accounts[addr])
            clients[addr] = Client(m, api_url=api_url)
        return clients[addr]

    for addr in {str(audits[j].customer).lower() for j in ids}:
        client(addr)

    def one(j: int) -> tuple[int, int, int, str | None]:
        lines, text = expected[j]
        c = clients[str(audits[j].customer).lower()]
        want = Counter(lines)
        try:
            # A job's results may still wait on its provider's disk after an outage (the agent
            # ships them again with a backoff): read again, as the customer is told to, until
            # its final chunk is there or `FINAL_WAIT_S` passed.
            while True:
                stream = c.logs(j, follow=True, timeout_s=30)
                got = Counter(r.line for r in stream if not r.agent)
                if stream.final or time.monotonic() > deadline:
                    break
                time.sleep(5.0)
        except Exception as exc:
            return len(lines), 0, 0, f"job {j}'s log unreadable: {type(exc).__name__}: {exc}"
        lost = sum((want - got).values())
        doubled = sum(max(0, got[k] - want[k]) for k in want)
        dest = Path(tempfile.mkdtemp(dir=work))
        try:
            out = c.outputs(j, dest)
            body = (dest / "out.txt").read_text() if "out.txt" in out.files else None
        except Tampered as exc:
            return lost, doubled, 1, f"job {j}: {exc}"
        except Exception as exc:
            # Committed to a digest but not there to check against it: a mismatch too.
            bad = int(audits[j].result_digest is not None)
            return lost, doubled, bad, f"job {j}'s outputs: {type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        if body != text:
            return lost, doubled, 1, f"job {j}: outputs hold {body!r}, the job wrote {text!r}"
        return lost, doubled, 0, None

    work.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(THREADS) as pool:
        for j, (lost, doubled, bad, note) in zip(ids, pool.map(one, ids), strict=True):
            rep.logs_lost += lost
            rep.logs_doubled += doubled
            rep.outputs_mismatch += bad
            if note and not bad and not lost:
                rep.unreadable += 1
            if (note or lost or doubled) and len(rep.details) < 20:
                rep.details.append(note or f"job {j}: {lost} lines lost, {doubled} doubled")
    return rep
