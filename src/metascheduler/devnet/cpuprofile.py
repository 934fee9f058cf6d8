"""Run a module under cProfile with each thread on its own CPU clock, and write the profile when
it stops: ``python -m metascheduler.devnet.cpuprofile OUT.prof MODULE ARGS...``.

``python -m cProfile`` counts wall time in the main thread only: a wait for a block looks busy,
and work done in other threads (the oracle's scheduler runs its rounds there) is not seen."""

from __future__ import annotations

import cProfile
import pstats
import runpy
import sys
import threading
import time
from typing import Any


def main(argv: list[str]) -> None:
    out, module, *rest = argv
    sys.argv = [module, *rest]
    profiles = [cProfile.Profile(time.thread_time)]
    thread_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> Any:
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        return profile.runcall(thread_run, self)

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    try:
        profiles[0].runcall(runpy.run_module, module, run_name="__main__", alter_sys=True)
    finally:
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            stats.add(profile)
        stats.dump_stats(out)


if __name__ == "__main__":
    main(sys.argv[1:])
