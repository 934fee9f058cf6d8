"""The provider's record on chain: hardware, prices and labels registered from the agent's
settings (only when the chain's record differs), and the wait for the admin's approval.

A banned provider's agent still starts: it takes no new job, and reports the ones it accepted
before the ban until they end, so that the compute it delivers is paid (see ``banned_notice``)."""

from __future__ import annotations

import logging
import threading
import time

from metascheduler.agent.backends import Backend
from metascheduler.agent.chainview import ChainView
from metascheduler.agent.settings import AgentSettings
from metascheduler.chain import Market
from metascheduler.chain.types import Hardware, Prices, ProviderStatus
from metascheduler.commands import APPROVE_PROVIDER
from metascheduler.errors import MetaschedulerError

log = logging.getLogger("metascheduler.agent")

APPROVAL_LOG_EVERY_S = 60.0


def banned_notice(provider: str, market: str) -> str:
    """What a ban means for this agent, and what its operator can do, in words."""
    return (
        f"provider {provider} is banned on market {market}: this agent accepts no new job (the "
        "contract refuses its ACCEPTs and the oracle places nothing more on it). It goes on "
        "reporting the jobs it accepted before the ban (START, COMPLETE, kills) until they end, "
        "so that the compute it delivers is paid; its earnings stay its own (`metascheduler "
        "credits withdraw`). A ban is for good: ask the market's admin why; once its jobs have "
        "ended this agent has nothing left to do, and a new provider needs a new key"
    )


class AgentError(MetaschedulerError):
    """The agent cannot go on; the message says why and what to do."""

    kind = "agent"


def resolve_hardware(settings: AgentSettings, backend: Backend) -> Hardware:
    """The hardware to declare: the settings', with what they leave out read from the backend."""
    hw = settings.hardware
    if hw.cpus is None or hw.gpus is None or hw.mem_mb is None:
        cap = backend.capacity()
        return Hardware(
            nodes=hw.nodes,
            cpus=hw.cpus if hw.cpus is not None else cap.total_cpus,
            gpus=hw.gpus if hw.gpus is not None else cap.total_gpus,
            mem_mb=hw.mem_mb if hw.mem_mb is not None else cap.total_mem_mb,
        )
    return Hardware(hw.nodes, hw.cpus, hw.gpus, hw.mem_mb)


class Registration:
    """One provider's registration on one market."""

    def __init__(
        self, settings: AgentSettings, market: Market, chain: ChainView, hardware: Hardware
    ) -> None:
        self.settings = settings
        self.market = market
        self.chain = chain
        self.hardware = hardware
        self.address = market.sender_or_fail().address

    def register(self) -> ProviderStatus:
        """Registers (or updates) the provider's hardware, prices and labels when the chain's
        record differs from the settings. Returns its standing."""
        p = self.settings.prices
        prices = Prices(p.cpu, p.gpu, p.gb)
        labels = list(self.settings.labels)
        status, hw, current = self.market.get_provider(self.address)
        if status is ProviderStatus.BANNED:
            # It cannot register again (the contract refuses), and need not: its jobs go on.
            log.warning("%s", banned_notice(self.address, self.market.address))
            return status
        same = (
            status is not ProviderStatus.NONE
            and hw == self.hardware
            and current == prices
            and sorted(self.chain.registered_labels(self.chain.head().number) or []) == labels
        )
        if not same:
            self.market.register_provider(self.hardware, prices, labels)
            log.info(
                "registered provider %s: %s, prices %s units/min, labels %s",
                self.address,
                self.hardware,
                prices,
                labels or "none",
            )
            status, _, _ = self.market.get_provider(self.address)
        return status

    def wait_for_approval(self, stop: threading.Event) -> bool:
        """Blocks until the admin approves the provider (True) or ``stop`` is set (False). A
        banned provider waits for nothing (True): its agent reports the jobs it accepted."""
        last_log = -APPROVAL_LOG_EVERY_S
        while not stop.is_set():
            status, _, _ = self.market.get_provider(self.address)
            if status is ProviderStatus.APPROVED:
                log.info("provider %s is approved: taking jobs", self.address)
                return True
            if status is ProviderStatus.BANNED:
                return True
            if status is ProviderStatus.NONE:
                self.register()
            if time.monotonic() - last_log >= APPROVAL_LOG_EVERY_S:
                log.info(
                    "waiting for the admin to approve %s on market %s (%s)",
                    self.address,
                    self.market.address,
                    APPROVE_PROVIDER.format(provider=self.address),
                )
                last_log = time.monotonic()
            stop.wait(self.settings.poll_interval_s)
        return False
