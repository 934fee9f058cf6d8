"""`python -m metascheduler.api [settings.toml]`."""

from __future__ import annotations

import sys

from .service import run_api_command

if __name__ == "__main__":
    sys.exit(run_api_command(sys.argv[1] if len(sys.argv) > 1 else None))
