"""Reading Standard Workload Format traces (Parallel Workloads Archive), plain or gzipped.

One job a line, 18 whitespace-separated fields, ``;`` starts a header line, -1 means unknown.
The conventions follow issue 6 so that results compare with published work.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# 0-based SWF field numbers.
_SUBMIT, _RUN, _ALLOC_PROCS, _REQ_PROCS, _REQ_TIME = 1, 3, 4, 7, 8


@dataclass(frozen=True, slots=True)
class TraceJob:
    job_id: int  # position among the kept jobs: unique even where a trace's own numbers are not
    swf_id: int  # the trace's job number, for reports
    submit: float
    runtime: float
    procs: int
    # Requested time raised to the runtime where smaller (so no job is killed), or the runtime
    # where none was requested: what the schedulers may know, never the runtime itself.
    estimate: float


def read_swf(path: str | Path, limit: int | None = None) -> list[TraceJob]:
    """The kept jobs (runtime > 0 and processors > 0), in submit order."""
    jobs: list[TraceJob] = []
    for fields in _records(Path(path)):
        runtime = float(fields[_RUN])
        procs = int(fields[_ALLOC_PROCS])
        if procs <= 0:
            procs = int(fields[_REQ_PROCS])
        if runtime <= 0 or procs <= 0:
            continue
        requested = float(fields[_REQ_TIME])
        estimate = max(requested, runtime) if requested > 0 else runtime
        jobs.append(
            TraceJob(len(jobs), int(fields[0]), float(fields[_SUBMIT]), runtime, procs, estimate)
        )
        if limit is not None and len(jobs) >= limit:
            break
    # Traces are nearly sorted already; a stable sort keeps the trace's order among equal times.
    jobs.sort(key=lambda j: j.submit)
    return [
        TraceJob(i, j.swf_id, j.submit, j.runtime, j.procs, j.estimate) for i, j in enumerate(jobs)
    ]


def _records(path: Path) -> Iterator[list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) >= 9 and not fields[0].startswith(";"):
                yield fields
