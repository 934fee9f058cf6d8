"""Chain layer: contract bindings, a local-signing transaction sender, events and errors.

Knows nothing of the oracle, agent or store; talks JSON-RPC to any EVM chain.
"""

from metascheduler.chain.artifacts import Artifact, load_artifact, stale_sources
from metascheduler.chain.deployment import Deployment, load_deployment
from metascheduler.chain.errors import ChainError, RevertError, RpcUnavailable
from metascheduler.chain.market import Market
from metascheduler.chain.sender import TxSender
from metascheduler.chain.types import JobStatus, ProviderStatus, Terms

__all__ = [
    "Artifact",
    "ChainError",
    "Deployment",
    "JobStatus",
    "Market",
    "ProviderStatus",
    "RevertError",
    "RpcUnavailable",
    "Terms",
    "TxSender",
    "load_artifact",
    "load_deployment",
    "stale_sources",
]
