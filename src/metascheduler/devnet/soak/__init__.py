"""The soak: a whole local grid at real load under faults, then a verdict on what it promised.

    metascheduler.devnet.soak.run_soak(SoakOptions(minutes=10, seed=1)) -> exit code

Brings up anvil (1-second blocks), the contracts, SeaweedFS for results, the store (a fresh
PostgreSQL database when one is configured, else SQLite), the API, the oracle and five provider
agents (four on the local backend, one of them banned mid-run, and one on Slurm partition beta
when Slurm answers), every service reaching anvil through a `TcpProxy` that the injector can cut.
A fast stream of short jobs (3.5 a second by default, from 20 wallets that sign locally and send
in batches) runs beside customers whose longer jobs are cancelled at random points, run out of
credits or are topped up. The injector, from a seeded generator, SIGKILLs and restarts the oracle
and agents (some past the oracle's heartbeat timeout), takes the API down past that timeout,
cuts the RPC, reorganises the chain with `anvil_reorg` (up to `MAX_REORG_DEPTH` blocks; the
agents wait for that many confirmations, the oracle for none), bans a provider with jobs
running, makes a provider raise its price, submits hostile specs, sends a burst of spam jobs
and throws malformed input at the API and the CLI. Then the grid drains and the last line
printed is one JSON object (see `Verdict`); exit 0 only when nothing was lost or run twice,
credits are conserved, the audit is clean, no door answered 5xx or misbehaved, no service
crashed, the backends' delivered compute was paid and not overbilled (`compute`), and the
sampled jobs' logs and outputs came back to their customers intact (`readback`).

Anvil's development keys are public; they are used here on the devnet only.
"""

from metascheduler.devnet.soak.common import SoakOptions
from metascheduler.devnet.soak.run import run_soak

__all__ = ["SoakOptions", "run_soak"]
