"""`metascheduler api run`: settings, migrations, then uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from metascheduler import logs
from metascheduler.config import SettingsError
from metascheduler.errors import one_line
from metascheduler.store.db import upgrade_to_head

from .app import create_app
from .chainhead import ChainHead
from .settings import ApiSettings

log = logging.getLogger(__name__)


def run_api_command(config_path: str | None) -> int:
    """Runs the API until interrupted; returns the process exit status."""
    logs.setup("INFO")
    try:
        settings = ApiSettings.load(config_path)
    except SettingsError as exc:
        log.error("API stopped: %s", one_line(exc))
        return exc.exit_code
    logs.setup(settings.log_level)
    if not settings.market_address:
        log.warning("market_address is not set: heartbeats will be refused with 503")
    if settings.deployment is not None:
        try:
            chain_id = ChainHead(
                settings.rpc_url, timeout_s=settings.rpc_timeout_s, cache_s=0
            ).chain_id()
        except Exception as exc:
            # The API serves the store without the chain; the oracle and the agents check it.
            log.warning("cannot check the chain id at %s: %s", settings.rpc_url, exc)
        else:
            try:
                settings.check_chain(chain_id)
            except SettingsError as exc:
                log.error("API stopped: %s", one_line(exc))
                return exc.exit_code
    try:
        # Idempotent; lets the API start before the oracle has ever run.
        upgrade_to_head(settings.database_url)
    except Exception as exc:
        log.error("cannot open or migrate the store at %s: %s", settings.database_url, exc)
        return 1
    app = create_app(settings)
    log.info("API and dashboard on http://%s:%d/", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0
