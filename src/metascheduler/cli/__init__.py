"""`metascheduler`: the command line over the SDK (metascheduler.client) and the audit.

One module per command group (`wallet`, `credits`, `job`, `provider`, `audit`, and the services
in `services`); `app` assembles them. Heavy modules (web3, the SDK, the services) are imported
inside the commands, so that `metascheduler --help` answers at once. Every command takes
`--json`: its last line on stdout is then one JSON object (amounts in integer credit units,
6 decimals). Exit codes: 0 ok, 1 the operation failed or the audit found a discrepancy, 2 bad
input (spec, amount, key, config), 3 the RPC endpoint is down.
"""

from metascheduler.cli.app import app, main
from metascheduler.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_RPC, EXIT_USAGE, UsageError

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_RPC", "EXIT_USAGE", "UsageError", "app", "main"]
