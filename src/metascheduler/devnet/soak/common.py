"""The soak's accounts, prices and options, and its timestamped printer."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from metascheduler import billing

CREDIT = billing.UNITS_PER_CREDIT
ADMIN, ORACLE = 0, 1
LOCAL_PROVIDERS = (2, 3, 4)
SLURM_PROVIDER = 5
#: A fifth provider (local), the one the `ban` fault bans while it runs jobs: a ban is for good,
#: and four providers serve on after it.
BANNED_PROVIDER = 6
#: The customer of the hostile specs (each its own job, cancelled once no agent will run it).
HOSTILE = 7
CUSTOMERS = tuple(range(8, 18))
CLI_WALLET = 19  # used only by the malformed-CLI fault: its nonce proves nothing was sent
PRICE_CPU = 1_000  # units per CPU-minute: a 1-CPU job costs 16.7 units a second
MAX_PRICE = 5_000
#: The `price_raise` fault re-registers one provider at this CPU price (within `MAX_PRICE`).
RAISED_PRICE_CPU = 1_500
#: The fast stream's default rate: 2,100 jobs in 10 minutes (`--minutes 3` keeps the rate).
JOBS_PER_S = 3.5
#: Wallets of the fast stream (derived keys, funded by the soak) and of the spam burst.
STREAM_WALLETS = 20
SPAM_WALLETS = 10
#: The spam burst at the default 10 minutes; shorter runs scale it with their length.
BURST_JOBS = 10_000
#: CPUs each local provider declares: the fast stream's jobs are no-ops, so the grid's limit is
#: its agents' and oracle's pace, not the machine's cores.
LOCAL_CPUS = 48
#: The deepest reorg the injector makes, and so the agents' confirmations: an agent acts on a
#: placement, and gives a job to its backend, only once they are this many blocks deep, which
#: no injected reorg reaches. (At 0 a reorg that drops the oracle's placement after the job
#: started would make it run twice, once here and once where it is placed again: the setting
#: the docs prescribe is confirmations at or above the expected reorg depth.)
MAX_REORG_DEPTH = 5


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class SoakOptions:
    minutes: float = 10.0
    seed: int = 1
    root: Path = Path("var/soak")
    customers: int = 8
    #: Jobs per second of the fast stream (pre-signed transactions from `STREAM_WALLETS`).
    rate: float = JOBS_PER_S
    #: Jobs of the spam burst (None: `BURST_JOBS` scaled by the run's length).
    burst: int | None = None
    #: Jobs whose logs and outputs the verdict reads back as their customer (None: all).
    results_sample: int | None = 400
    #: Mean seconds between two jobs of one customer.
    job_interval_s: float = 20.0
    #: Mean seconds between two faults (default: about 40 faults over the run, at least every 8 s
    #: in short runs so that each kind happens once).
    fault_interval_s: float | None = None
    #: Seconds to wait for every job to end after the load (None: 240 s, or 1.5 s per second
    #: of load if longer: on 2 cores the grid ends the default rate's jobs more slowly than
    #: they come, and the backlog drains here).
    drain_timeout_s: float | None = None
    heartbeat_timeout_s: float = 20.0
    slurm: bool = True
    progress_s: float = 10.0

    @property
    def drain_s(self) -> float:
        if self.drain_timeout_s is not None:
            return self.drain_timeout_s
        return max(240.0, 1.5 * self.minutes * 60)

    @property
    def burst_jobs(self) -> int:
        if self.burst is not None:
            return self.burst
        return max(100, round(BURST_JOBS * self.minutes / 10))
