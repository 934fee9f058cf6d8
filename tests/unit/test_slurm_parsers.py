"""Slurm output parsers on outputs recorded from real daemons (tests/data/slurm/capture.sh)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from metascheduler.agent.backends.base import BackendStatus
from metascheduler.agent.backends.slurm import (
    SLURM_STATES,
    format_time_limit,
    parse_exit_code,
    parse_sacct,
    parse_sinfo_capacity,
    parse_squeue,
    parse_time,
    translate_state,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"
S = BackendStatus


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_recording_is_from_the_slurm_we_target() -> None:
    assert recorded("version.txt").startswith("slurm-wlm 22.05")


# (native id, raw state, our state, reason, start, end, partition, name) in squeue_ended.txt
SQUEUE_ENDED = [
    ("7", "COMPLETED", S.COMPLETED, "None", "2026-11-26T15:53:35", "alpha", "ms-101"),
    ("8", "FAILED", S.FAILED, "NonZeroExitCode", "2026-11-26T15:53:35", "alpha", "ms-102"),
    ("9", "CANCELLED", S.CANCELLED, "None", "2026-11-26T15:53:38", "alpha", "ms-103"),
    ("10", "TIMEOUT", S.TIMEOUT, "TimeLimit", "2026-11-26T15:54:52", "alpha", "ms-104"),
    ("2", "FAILED", S.FAILED, "NonZeroExitCode", "2026-11-26T15:52:37", "beta", "ms-2"),
]


@pytest.mark.parametrize(("nid", "raw", "state", "reason", "end", "part", "name"), SQUEUE_ENDED)
def test_squeue_ended_jobs(
    nid: str, raw: str, state: BackendStatus, reason: str, end: str, part: str, name: str
) -> None:
    rows = {r.native_id: r for r in parse_squeue(recorded("squeue_ended.txt"))}
    row = rows[nid]
    assert (row.raw_state, row.reason, row.partition, row.name) == (raw, reason, part, name)
    assert translate_state(row.raw_state) is state
    assert row.end == ts(end)


def test_squeue_live_jobs() -> None:
    rows = {r.name: r for r in parse_squeue(recorded("squeue_mixed.txt"))}
    pending, running = rows["ms-105"], rows["ms-104"]
    assert (translate_state(pending.raw_state), pending.reason) == (S.QUEUED, "Resources")
    assert pending.start is None and pending.end is None and pending.time_limit == "2:00"
    assert translate_state(running.raw_state) is S.RUNNING
    assert running.start == ts("2026-11-26T15:53:35") and running.time_limit == "1:00"


# (native id, our state, exit code) in sacct_jobcomp.txt: exit 0, exit 3, scancel, time limit
SACCT = [("7", S.COMPLETED, 0), ("8", S.FAILED, 3), ("9", S.CANCELLED, 0), ("10", S.TIMEOUT, 0)]


@pytest.mark.parametrize(("nid", "state", "exit_code"), SACCT)
def test_sacct_jobcomp(nid: str, state: BackendStatus, exit_code: int) -> None:
    rows = {r.native_id: r for r in parse_sacct(recorded("sacct_jobcomp.txt"))}
    row = rows[nid]
    assert translate_state(row.raw_state) is state
    assert row.exit_code == exit_code
    assert row.start is not None and row.end is not None and row.end >= row.start
    assert row.partition == "alpha" and row.name.startswith("ms-")


def test_timeout_recorded_after_its_time_limit() -> None:
    row = next(r for r in parse_sacct(recorded("sacct_jobcomp.txt")) if r.raw_state == "TIMEOUT")
    assert row.start is not None and row.end is not None
    assert row.end - row.start >= 60  # --time=1; Slurm checks limits about every 30 s


def test_sinfo_capacity() -> None:
    # Recorded with one job of 1 CPU and 300 MB running on the 2-CPU node.
    cap = parse_sinfo_capacity(recorded("sinfo_capacity.txt"))
    assert (cap.total_cpus, cap.free_cpus) == (2, 1)
    assert cap.free_mem_mb == cap.total_mem_mb - 300
    assert (cap.total_gpus, cap.free_gpus) == (0, 0)


@pytest.mark.parametrize(
    ("line", "total", "free", "free_mem"),
    [
        # Not recorded (no such hardware here): GPU nodes, and a drained node that gives nothing.
        ("g1|4/60/0/64|512000|256000|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)|mixed", 4, 3, 256000),
        ("g2|0/64/0/64|512000|0|gpu:2|gpu:0|drained", 2, 0, 0),
    ],
)
def test_sinfo_gpus_and_unusable_nodes(line: str, total: int, free: int, free_mem: int) -> None:
    cap = parse_sinfo_capacity(line + "\n")
    assert (cap.total_gpus, cap.free_gpus, cap.free_mem_mb) == (total, free, free_mem)


def test_sbatch_parsable_output_is_the_id() -> None:
    assert recorded("sbatch_ok.txt").strip().isdigit()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("sbatch_too_many_cpus", "More processors requested than permitted"),
        ("sbatch_bad_partition", "Invalid partition name specified"),
        ("sbatch_no_gpu", "Invalid generic resource (gres) specification"),
        ("squeue_unknown_id", "Invalid job id specified"),
        ("scontrol_update_ended", "Job has already finished"),
    ],
)
def test_recorded_refusals(case: str, message: str) -> None:
    assert recorded(f"{case}.rc").strip() == "1"
    assert message in recorded(f"{case}.stderr")


def test_scontrol_show_job_time_limit_after_update() -> None:
    assert "TimeLimit=00:07:00" in recorded("scontrol_show_job.txt")


@pytest.mark.parametrize(
    ("text", "code"),
    [("0:0", 0), ("3:0", 3), ("ExitCode=1:0", 1), ("0:9", 137), ("0:15", 143), ("bad", None)],
)
def test_exit_codes(text: str, code: int | None) -> None:
    assert parse_exit_code(text) == code


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("PENDING", S.QUEUED),
        ("CONFIGURING", S.QUEUED),
        ("RUNNING", S.RUNNING),
        ("COMPLETING", S.RUNNING),
        ("COMPLETED", S.COMPLETED),
        ("FAILED", S.FAILED),
        ("TIMEOUT", S.TIMEOUT),
        ("DEADLINE", S.TIMEOUT),
        ("OUT_OF_MEMORY", S.FAILED),
        ("NODE_FAIL", S.FAILED),
        ("BOOT_FAIL", S.FAILED),
        ("PREEMPTED", S.FAILED),
        ("CANCELLED", S.CANCELLED),
        ("CANCELLED by 0", S.CANCELLED),  # sacct's form
        ("RUNNING+", S.RUNNING),
        ("SOMETHING_NEW", S.UNKNOWN),
        ("", S.UNKNOWN),
    ],
)
def test_state_translation(raw: str, state: BackendStatus) -> None:
    assert translate_state(raw) is state


def test_every_translated_state_is_explicit() -> None:
    assert "TIMEOUT" in SLURM_STATES and SLURM_STATES["TIMEOUT"] is not S.FAILED
    assert all(isinstance(v, BackendStatus) for v in SLURM_STATES.values())


def test_times_and_limits() -> None:
    assert parse_time("N/A") is None and parse_time("Unknown") is None
    assert parse_time("2026-11-26T15:52:37") == ts("2026-11-26T15:52:37")
    assert [format_time_limit(s) for s in (1, 60, 61, 3600)] == ["1", "1", "2", "60"]


def test_garbage_lines_are_errors() -> None:
    with pytest.raises(ValueError, match="unexpected squeue line"):
        parse_squeue("12|RUNNING\n")
    with pytest.raises(ValueError, match="unexpected sacct line"):
        parse_sacct("12|RUNNING\n")
