"""The provider's record on chain: hardware, prices and labels registered from the agent's
settings (only when the chain's record differs), and the wait for the admin's approval."""

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
            raise AgentError(
                f"provider {self.address} is banned on market {self.market.address}: it cannot "
                "register or take jobs; ask the admin why"
            )
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
        """Blocks until the admin approves the provider (True) or ``stop`` is set (False)."""
        last_log = -APPROVAL_LOG_EVERY_S
        while not stop.is_set():
            status, _, _ = self.market.get_provider(self.address)
            if status is ProviderStatus.APPROVED:
                log.info("provider %s is approved: taking jobs", self.address)
                return True
            if status is ProviderStatus.BANNED:
                raise AgentError(f"provider {self.address} was banned while waiting for approval")
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
