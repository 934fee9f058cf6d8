"""The one logging set-up of the CLI and every service: one line per record on stderr,
`key=value` pairs before the message.

Keys never reach a log: settings hold them as `SecretStr` (printed as stars) and the errors'
messages never quote a setting's value (`config.py`, `keys.py`)."""

from __future__ import annotations

import logging
import sys
import time

#: Libraries that log every routine step at INFO: quiet unless something goes wrong.
_CHATTY = ("apscheduler", "httpx", "urllib3")


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace("\n", " | ")
        ms = int(record.msecs)
        line = f"ts={ts}.{ms:03d}Z level={record.levelname} logger={record.name} msg={msg}"
        if record.exc_info:
            line += " exc=" + self.formatException(record.exc_info).replace("\n", " | ")
        return line


class _Handler(logging.StreamHandler):
    """Ours, so that a second set-up (settings read after the first) replaces it, and handlers
    others installed (a test's log capture) stay."""


def setup(level: str | int) -> None:
    """Sends every record at `level` and above to stderr, one line each; safe to call again."""
    handler = _Handler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Handler)] + [handler]
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
