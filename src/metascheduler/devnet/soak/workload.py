"""The soak's job streams: a fast one of short jobs from many wallets (pre-signed, sent raw in
batches), and customers submitting, cancelling and topping up longer jobs."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from metascheduler.billing import SECONDS_PER_MINUTE
from metascheduler.chain import Market
from metascheduler.devnet.soak.common import (
    CREDIT,
    CUSTOMERS,
    MAX_PRICE,
    PRICE_CPU,
    STREAM_WALLETS,
    SoakOptions,
    say,
)
from metascheduler.devnet.soak.grid import SoakGrid
from metascheduler.devnet.soak.wallets import Wallets
from metascheduler.oracle.service import MIN_RUN_S
from metascheduler.spec import encode_spec, parse_spec


def _spec(name: str, script: str, minutes: int = 10) -> bytes:
    text = json.dumps(
        {
            "name": name,
            "script": script,
            "resources": {"tasks": 1, "cpus_per_task": 1, "mem_per_cpu_mb": 256},
            "time_limit_minutes": minutes,
        }
    )
    return encode_spec(parse_spec(text))


#: The least escrow the oracle offers a 1-CPU job at `PRICE_CPU`: a minimum run's worth.
MIN_RUN_ESCROW = -(-PRICE_CPU * MIN_RUN_S // SECONDS_PER_MINUTE)

#: kind -> weight in the customers' stream
JOB_KINDS = {"finish": 35, "fail": 15, "cancel": 20, "dry": 15, "topup": 15}
#: kind -> weight in the fast stream
QUICK_KINDS = {"quick": 80, "quickfail": 20}


def quick_spec(kind: str, n: int, lines: int, rng: random.Random) -> bytes:
    """A short job that prints `lines` numbered lines, writes one output file and, for
    `quickfail`, exits with an error. Its name says what it printed (`quick_expectation`)."""
    script = (
        f'for i in $(seq 1 {lines}); do echo "soak {n} line $i"; done; '
        f'echo "soak {n} output" > "$MS_OUTPUT_DIR/out.txt"; sleep 0.{rng.randint(0, 5)}'
    )
    if kind == "quickfail":
        script += f"; exit {rng.choice([1, 2, 3, 42])}"
    return _spec(f"soak-{kind}-{n}-k{lines}", script, minutes=5)


def quick_expectation(name: str) -> tuple[int, list[str], str] | None:
    """(n, lines printed, output file's text) of a fast-stream job, from its spec's name."""
    parts = name.split("-")
    if len(parts) != 4 or parts[0] != "soak" or parts[1] not in QUICK_KINDS:
        return None
    n, k = int(parts[2]), int(parts[3][1:])
    return n, [f"soak {n} line {i}" for i in range(1, k + 1)], f"soak {n} output\n"


class Workload:
    """One thread per customer wallet, each submitting jobs at random intervals."""

    def __init__(self, grid: SoakGrid, opts: SoakOptions, seed: int):
        self.grid = grid
        self.opts = opts
        self.seed = seed
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.submitted: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_samples: list[str] = []
        self.threads: list[threading.Thread] = []
        #: jobs (spam excluded) that had ended when the load stopped, set by the runner
        self.ended_in_load = 0
        #: seconds the load lasted, set by the runner
        self.load_s = 0.0
        self.stream = Wallets(grid.anvil.url, grid.market(0), "stream", STREAM_WALLETS)

    def fund(self) -> None:
        self.stream.fund_units(self.grid.admin, minted=1_000 * CREDIT, deposited=500 * CREDIT)
        say(f"{STREAM_WALLETS} stream wallets funded; {self.opts.rate:g} jobs/s from them")

    def start(self) -> None:
        t = threading.Thread(target=self._fast, name="stream", daemon=True)
        t.start()
        self.threads.append(t)
        for n, idx in enumerate(CUSTOMERS[: self.opts.customers]):
            t = threading.Thread(
                target=self._customer, args=(idx, random.Random(self.seed * 1000 + n)), daemon=True
            )
            t.start()
            self.threads.append(t)

    def join(self, timeout_s: float = 90.0) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def _fast(self) -> None:
        """The fast stream: every half second, the jobs due by then, round-robin over the
        wallets, in one batch."""
        rng = random.Random(self.seed)
        kinds, weights = zip(*QUICK_KINDS.items(), strict=True)
        started = time.monotonic()
        n = 0
        while not self.stop.wait(0.5):
            due = int((time.monotonic() - started) * self.opts.rate)
            raws = []
            while n < due:
                kind = rng.choices(kinds, weights)[0]
                spec = quick_spec(kind, n, rng.randint(1, 5), rng)
                raws.append(self.stream.request(n % STREAM_WALLETS, spec, CREDIT // 10, MAX_PRICE))
                n += 1
                with self.lock:
                    self.submitted[kind] += 1
            try:
                self.stream.send(raws)
            except Exception as exc:
                self._error("the fast stream's send", exc)
                self.stream.resync()

    def _customer(self, idx: int, rng: random.Random) -> None:
        market = self.grid.market(idx)
        kinds, weights = zip(*JOB_KINDS.items(), strict=True)
        while not self.stop.wait(rng.expovariate(1 / self.opts.job_interval_s)):
            kind = rng.choices(kinds, weights)[0]
            try:
                self._one(market, kind, rng)
            except Exception as exc:
                self._error(f"{kind} by wallet {idx}", exc)
                try:
                    assert market.sender is not None
                    market.sender.resync_nonce()
                except Exception as exc2:
                    self._error(f"resync of wallet {idx}", exc2)

    def _error(self, what: str, exc: Exception) -> None:
        with self.lock:
            self.errors[type(exc).__name__] += 1
            if len(self.error_samples) < 30:
                self.error_samples.append(f"{what}: {type(exc).__name__}: {str(exc)[:300]}")

    def _submit(self, market: Market, kind: str, script: str, escrow: int) -> int:
        job_id = market.request_job(
            _spec(f"soak-{kind}", script), 1, 0, 256, max_price_per_minute=MAX_PRICE, escrow=escrow
        )
        with self.lock:
            self.submitted[kind] += 1
        return job_id

    def _one(self, market: Market, kind: str, rng: random.Random) -> None:
        if kind == "finish":
            self._submit(market, kind, f"echo soak; sleep {rng.randint(1, 6)}", CREDIT // 10)
        elif kind == "fail":
            code = rng.choice([1, 2, 3, 42])
            self._submit(market, kind, f"sleep {rng.randint(1, 4)}; exit {code}", CREDIT // 10)
        elif kind == "cancel":
            # Bounded even if the cancel never lands: the script ends by itself in 2 minutes.
            job_id = self._submit(market, kind, "sleep 120", CREDIT // 10)
            self.stop.wait(rng.uniform(0, 25))  # when the soak stops, cancel at once
            self._act(market, job_id, "cancel", lambda: market.cancel_job(job_id))
        elif kind == "dry":
            # 1,000-1,250 units at 1,000 units/minute: 60-75 s of compute, then OUT_OF_CREDITS.
            # Never less than `MIN_RUN_ESCROW`: the oracle offers no job that cannot pay a
            # minimum run, and the verdict counts a job left PENDING as lost.
            self._submit(market, kind, "sleep 600", rng.randint(MIN_RUN_ESCROW, 1_250))
        elif kind == "topup":
            # Funded for 66 s, so the top-up lands while it runs and extends its run.
            job_id = self._submit(market, kind, "sleep 600", 1_100)
            self.stop.wait(rng.uniform(1, 15))
            amount = rng.randint(100, 300)
            self._act(market, job_id, "top-up", lambda: market.top_up(job_id, amount))

    def _act(self, market: Market, job_id: int, what: str, fn: Callable[[], Any]) -> None:
        if market.get_job(job_id).status.terminal:
            with self.lock:
                self.actions[f"{what} skipped (already ended)"] += 1
            return
        try:
            fn()
            with self.lock:
                self.actions[what] += 1
        except Exception as exc:
            # The job may have ended between the read and the transaction: a revert is fine.
            with self.lock:
                self.actions[f"{what} refused ({type(exc).__name__})"] += 1
