"""Reading Standard Workload Format traces (Parallel Workloads Archive), plain or gzipped.

One job a line, 18 whitespace-separated fields, ``;`` starts a header line, -1 means unknown.
The conventions (docs/placement.md) follow published work so that results compare with it.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from metascheduler.errors import InputError

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


class TraceError(InputError, ValueError):
    """The file is not an SWF trace the simulator can replay; the message says where and why."""

    kind = "trace"


def read_swf(path: str | Path, limit: int | None = None) -> list[TraceJob]:
    """The kept jobs (runtime > 0 and processors > 0), in submit order. TraceError names the
    file and line of anything that is not SWF, or says that no job could be kept."""
    path = Path(path)
    jobs: list[TraceJob] = []
    for number, fields in _records(path):
        try:
            runtime = float(fields[_RUN])
            procs = int(fields[_ALLOC_PROCS])
            if procs <= 0:
                procs = int(fields[_REQ_PROCS])
            requested = float(fields[_REQ_TIME])
            swf_id, submit = int(fields[0]), float(fields[_SUBMIT])
        except ValueError:
            raise TraceError(
                f"{path} line {number}: SWF fields are whole numbers (-1 for unknown), got "
                f"{' '.join(fields)[:80]!r}"
            ) from None
        if runtime <= 0 or procs <= 0:
            continue
        estimate = max(requested, runtime) if requested > 0 else runtime
        jobs.append(TraceJob(len(jobs), swf_id, submit, runtime, procs, estimate))
        if limit is not None and len(jobs) >= limit:
            break
    if not jobs:
        raise TraceError(
            f"{path} holds no job to replay (none with a runtime and processors above 0): "
            "is it an SWF trace?"
        )
    # Traces are nearly sorted already; a stable sort keeps the trace's order among equal times.
    jobs.sort(key=lambda j: j.submit)
    return [
        TraceJob(i, j.swf_id, j.submit, j.runtime, j.procs, j.estimate) for i, j in enumerate(jobs)
    ]


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each job line; header (``;``) and blank lines are skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as lines:
            for number, line in enumerate(lines, 1):
                fields = line.split()
                if not fields or fields[0].startswith(";"):
                    continue
                if len(fields) < 9:
                    raise TraceError(
                        f"{path} line {number}: an SWF job line has 18 fields, this one "
                        f"{len(fields)}: {line.strip()[:80]!r}"
                    )
                yield number, fields
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # gzip.BadGzipFile is an OSError
        kind = "gzip" if path.suffix == ".gz" else "plain text"
        raise TraceError(f"{path} cannot be read as an SWF trace ({kind}): {exc}") from None
