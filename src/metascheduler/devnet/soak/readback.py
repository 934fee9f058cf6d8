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
from metascheduler.devnet.soak.common import say
from metascheduler.results.errors import Tampered
from metascheduler.results.http import ApiRefused, ApiUnavailable, ResultsApi

#: Readers at once: each read is a few HTTP calls and a decryption.
THREADS = 4
#: The providers' shipping backlog (after an API outage, hundreds of jobs) drains after the
#: chain's: the verdict waits while sampled jobs' logs keep closing at the API, and gives up on
#: the rest only after this long without one more chunk stored for any of them.
STALL_S = 120.0
#: Seconds between two looks at the sampled jobs' logs while waiting.
POLL_S = 5.0
#: How long one job's read waits for its final chunk once the wait above is over.
FINAL_WAIT_S = 30.0


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
    wait_for_final_logs(ResultsApi(api_url), ids)
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
            # A log still open after `wait_for_final_logs` may yet close: read again, as the
            # customer is told to, until its final chunk is there or `FINAL_WAIT_S` passed.
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


def wait_for_final_logs(
    api: ResultsApi, ids: list[int], stall_s: float = STALL_S, poll_s: float = POLL_S
) -> list[int]:
    """Waits until the log of every job of `ids` is closed at the API (its public summary says
    `final`), as long as the providers' shipping makes progress: it stops once no chunk of any
    of them was stored for `stall_s`. Prints the progress; returns the jobs still open."""
    left = set(ids)
    chunks: dict[int, int] = {}
    moved = time.monotonic()
    started = moved
    try:
        while left:
            before = sum(chunks.values())
            for j in sorted(left):
                try:
                    log = api.summary(j)["log"]
                except (ApiUnavailable, ApiRefused):
                    continue
                chunks[j] = int(log["chunks"])
                if log["final"]:
                    left.discard(j)
            now = time.monotonic()
            if sum(chunks.values()) != before:
                moved = now
            if not left:
                break
            if now - moved > stall_s:
                say(
                    f"results: {len(left)} of {len(ids)} sampled logs still open, no chunk "
                    f"stored for {stall_s:.0f} s: reading back as they are"
                )
                break
            say(
                f"results: waiting for the providers' shipping, {len(ids) - len(left)} of "
                f"{len(ids)} sampled logs closed ({now - started:.0f} s)"
            )
            time.sleep(poll_s)
    finally:
        api.close()
    return sorted(left)
