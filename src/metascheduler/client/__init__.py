"""The Python SDK: a `Client` over one market for one wallet (see docs/sdk.md).

from metascheduler.client import Client
client = Client.connect("http://127.0.0.1:8545", market_address, account)
job_id = client.submit("examples/specs/hello.yaml", escrow=to_units(10), max_price=to_units(1))
for info in client.watch(job_id):
    print(info.status.name, info.spent)
"""

from metascheduler.client.client import Client
from metascheduler.client.errors import ClientError, InsufficientCredits, NotFound, WatchTimeout
from metascheduler.client.models import Balance, Deposit, JobInfo, ProviderInfo

__all__ = [
    "Balance",
    "Client",
    "ClientError",
    "Deposit",
    "InsufficientCredits",
    "JobInfo",
    "NotFound",
    "ProviderInfo",
    "WatchTimeout",
]
