"""The whole-grid benchmark's judgement of a step: kept up, or fell behind."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from metascheduler.chain import JobStatus

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_grid.py"


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_grid", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_step_whose_requests_went_out_slower_than_its_rate_did_not_keep_up() -> None:
    bench = _bench()

    def step(seconds: float) -> Any:
        jobs = {
            j: bench.Timeline(requested=j, placed=j + 1, accepted=j + 2, running=j + 3, ended=j + 4)
            for j in range(100)
        }
        for t in jobs.values():
            t.status = JobStatus.FINISHED
        return bench.Step(50.0, jobs=jobs, seconds=seconds, sent=100)

    assert step(2.0).kept_up, "every job finished, none waited longer than the first"
    slow = step(4.0)  # the sender managed 25 a second of the 50 asked
    assert slow.sent_per_s == 25.0
    assert not slow.kept_up, "a rate the customers never reached is not one the grid kept up"
