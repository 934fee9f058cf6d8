"""Prometheus metrics at /metrics: request latency and heartbeat counters are counted as they
happen; the store-derived gauges (jobs by state, providers alive, ingest lag) are read at scrape
time, so they are never stale and cost nothing between scrapes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from . import queries
from .chainhead import ChainHead

log = logging.getLogger(__name__)


class StoreCollector(Collector):
    def __init__(
        self, sessions: sessionmaker[Session], head: ChainHead, alive_since: Callable[[], float]
    ):
        self.sessions = sessions
        self.head = head
        self.alive_since = alive_since

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("metascheduler_store_up", "1 if the store answered this scrape")
        try:
            with self.sessions() as s:
                counts = queries.job_counts(s)
                provs = queries.provider_counts(s, self.alive_since())
                pos = queries.ingest_position(s)
        except Exception as exc:
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("metascheduler_jobs", "Jobs by state", labels=["state"])
        for state, n in counts.items():
            jobs.add_metric([state], n)
        yield jobs
        yield GaugeMetricFamily(
            "metascheduler_providers_alive",
            "Providers whose last heartbeat is younger than the heartbeat timeout",
            value=provs.alive,
        )
        yield GaugeMetricFamily(
            "metascheduler_providers_registered", "Providers known to the store", value=provs.total
        )
        if pos is not None:
            yield GaugeMetricFamily(
                "metascheduler_ingest_cursor_block", "Last block ingested", value=pos[0]
            )
            head = self.head.block_number()
            if head is not None:
                yield GaugeMetricFamily(
                    "metascheduler_ingest_lag_blocks",
                    "Chain head minus the last ingested block",
                    value=max(0, head - pos[0]),
                )


class Metrics:
    """One registry per app, so several apps (tests) never clash in the global registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "metascheduler_api_request_seconds",
            "API request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.heartbeats_accepted = Counter(
            "metascheduler_heartbeats_accepted", "Heartbeats accepted", registry=self.registry
        )
        self.heartbeats_rejected = Counter(
            "metascheduler_heartbeats_rejected",
            "Heartbeats rejected, by reason",
            ["reason"],
            registry=self.registry,
        )

    def watch_store(
        self, sessions: sessionmaker[Session], head: ChainHead, heartbeat_timeout_s: float
    ) -> None:
        self.registry.register(
            StoreCollector(sessions, head, lambda: time.time() - heartbeat_timeout_s)
        )
