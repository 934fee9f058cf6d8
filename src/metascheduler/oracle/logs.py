"""Structured logs: one line per record, `key=value` pairs after the message."""

from __future__ import annotations

import logging
import sys
import time


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace("\n", " | ")
        ms = int(record.msecs)
        line = f"ts={ts}.{ms:03d}Z level={record.levelname} logger={record.name} msg={msg}"
        if record.exc_info:
            line += " exc=" + self.formatException(record.exc_info).replace("\n", " | ")
        return line


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # APScheduler logs every run at INFO: too chatty at one tick per second.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
