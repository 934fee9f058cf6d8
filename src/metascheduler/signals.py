"""Stopping a long-running service cleanly on SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def stop_on_signals(stop: threading.Event, log: logging.Logger, after: str) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM set `stop` (logging that the service stops `after`
    what it is doing) instead of killing the process; the previous handlers come back after.
    Outside the main thread, where Python cannot install handlers, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping after %s", signal.Signals(signum).name, after)
        stop.set()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
