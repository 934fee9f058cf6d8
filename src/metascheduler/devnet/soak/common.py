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
CUSTOMERS = tuple(range(8, 18))
CLI_WALLET = 19  # used only by the malformed-CLI fault: its nonce proves nothing was sent
PRICE_CPU = 1_000  # units per CPU-minute: a 1-CPU job costs 16.7 units a second
MAX_PRICE = 5_000
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
    #: Mean seconds between two jobs of one customer.
    job_interval_s: float = 20.0
    #: Mean seconds between two faults (default: about 40 faults over the run, at least every 8 s
    #: in short runs so that each kind happens once).
    fault_interval_s: float | None = None
    drain_timeout_s: float = 240.0
    heartbeat_timeout_s: float = 20.0
    slurm: bool = True
    progress_s: float = 10.0
