"""The soak: a whole local grid under load and faults, then a verdict on what it promised.

    metascheduler.devnet.soak.run_soak(SoakOptions(minutes=10, seed=1)) -> exit code

Brings up anvil (1-second blocks), the contracts, the API, the oracle and provider agents
(three on the local backend, one on Slurm partition beta when Slurm answers), every service
reaching anvil through a `TcpProxy` that the fault injector can cut. Customers submit a stream
of jobs (finishing, failing, cancelled at random points, running out of credits, topped up)
while the injector, from a seeded generator, SIGKILLs and restarts the oracle and agents (some
agents only after the oracle's heartbeat timeout), cuts the RPC, reorganises the chain with
`anvil_reorg` (up to `MAX_REORG_DEPTH` blocks; the agents wait for that many confirmations, the
oracle for none) and throws malformed input at the API and the CLI. Then the grid drains and the
last line printed is one JSON object (see `Verdict`); exit 0 only when nothing was lost or run
twice, credits are conserved, the audit is clean and no door answered 5xx or misbehaved.

Anvil's development keys are public; they are used here on the devnet only.
"""

from metascheduler.devnet.soak.common import SoakOptions
from metascheduler.devnet.soak.run import run_soak

__all__ = ["SoakOptions", "run_soak"]
