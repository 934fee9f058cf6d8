"""The simulator: SWF conventions, a hand-checked EASY case, and invariants on a real slice."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from metascheduler.placement import POLICY_NAMES, get_policy
from metascheduler.sim import (
    ClusterSpec,
    SimResult,
    TraceError,
    TraceJob,
    bounded_slowdown,
    parse_clusters,
    read_swf,
    run,
    simulate,
    simulate_merged,
)
from metascheduler.sim.cli import run_sim_command

# A real trace (Parallel Workloads Archive, first 3,171 jobs of HPC2N 2002), kept in the repo.
HPC2N = Path(__file__).resolve().parents[1] / "data" / "traces" / "alea-hpc2n-3171jobs.swf.gz"
needs_traces = pytest.mark.skipif(not HPC2N.exists(), reason=f"trace {HPC2N} missing")


def swf_line(num: int, submit: int, run: int, alloc: int, req_procs: int, req_time: int) -> str:
    fields = [num, submit, -1, run, alloc, -1, -1, req_procs, req_time] + [-1] * 9
    return " ".join(str(f) for f in fields)


def test_readSwf_followsTheIssueConventions(tmp_path: Path) -> None:
    text = "\n".join(
        [
            "; MaxProcs: 8",
            swf_line(1, 0, 100, 4, 4, 200),  # kept, estimate = requested
            swf_line(2, 5, 0, 4, 4, 200),  # runtime 0: dropped
            swf_line(3, 6, 50, -1, 2, 40),  # allocated unknown: requested procs; est raised to 50
            swf_line(4, 7, 30, 0, -1, 100),  # no processors at all: dropped
            swf_line(5, 8, 70, 1, 1, -1),  # no requested time: estimate = runtime
        ]
    )
    path = tmp_path / "t.swf.gz"
    with gzip.open(path, "wt") as f:
        f.write(text + "\n")
    jobs = read_swf(path)
    assert [(j.swf_id, j.procs, j.estimate) for j in jobs] == [(1, 4, 200), (3, 2, 50), (5, 1, 70)]
    assert [j.job_id for j in jobs] == [0, 1, 2]


def test_boundedSlowdown() -> None:
    assert bounded_slowdown(0, 100) == 1.0
    assert bounded_slowdown(100, 100) == 2.0
    assert bounded_slowdown(45, 5) == 5.0  # (45 + 5) / 10: short jobs count as 10 s
    assert bounded_slowdown(0, 1) == 1.0


def test_parseClusters_withAndWithoutPrices() -> None:
    assert parse_clusters("50,25@3") == [ClusterSpec(50, 0), ClusterSpec(25, 3)]
    with pytest.raises(ValueError):
        parse_clusters("50,0")


def test_merged_easy_matchesAHandCheckedCase() -> None:
    """Clusters [6, 4] merge into one EASY machine of 10 processors.

    job  submit  run  procs  estimate
    J0     0     100    6      100
    J1     1      50    8       50
    J2     2      40    4       60
    J3     3     200    2      200
    J4     5      10    3       10

    t=0    J0 starts (6 of 10).
    t=1    J1 needs 8, 4 free: head, reserved at J0's estimated end t=100, spare 10-8 = 2.
    t=2    J2 (4 procs) fits now and its estimate ends at 62 <= 100: backfilled, starts at 2.
    t=3    J3, t=5 J4: nothing free.
    t=42   J2 ends (4 free). J1 still waits for t=100. J3 (2 procs) would end after 100 but
           fits the 2 spare: starts at 42 (spare now 0). J4 (3 procs) > 2 free: waits.
    t=100  J0 ends: 8 free, J1 starts. J4 (3) does not fit the 0 left.
    t=150  J1 ends: 8 free (J3 runs until 242): J4 starts at 150.
    """
    jobs = [
        TraceJob(0, 0, 0, 100, 6, 100),
        TraceJob(1, 1, 1, 50, 8, 50),
        TraceJob(2, 2, 2, 40, 4, 60),
        TraceJob(3, 3, 3, 200, 2, 200),
        TraceJob(4, 4, 5, 10, 3, 10),
    ]
    result = simulate_merged(jobs, [ClusterSpec(6), ClusterSpec(4)])
    starts = {o.job.job_id: o.start for o in result.outcomes}
    assert starts == {0: 0, 1: 100, 2: 2, 3: 42, 4: 150}
    assert result.clusters == [ClusterSpec(10)]


def assert_sane(result: SimResult, jobs: list[TraceJob]) -> None:
    # Every job accounted for, exactly once.
    seen = sorted(o.job.job_id for o in result.outcomes) + [j.job_id for j, _ in result.unplaceable]
    assert sorted(seen) == [j.job_id for j in jobs]
    # No job before its submit.
    assert all(o.start >= o.job.submit for o in result.outcomes)
    # No cluster ever over its processors: sweep starts and ends (ends first at equal times).
    for c, spec in enumerate(result.clusters):
        events = sorted(
            [(o.start, 1, o.job.procs) for o in result.outcomes if o.cluster == c]
            + [(o.end, 0, -o.job.procs) for o in result.outcomes if o.cluster == c]
        )
        used = 0
        for _, _, delta in events:
            used += delta
            assert used <= spec.procs


@needs_traces
@pytest.mark.parametrize("name", [*POLICY_NAMES, "merged"])
def test_replay_isSane_onARealSlice(name: str) -> None:
    jobs = [j for j in read_swf(HPC2N, limit=600) if j.procs <= 100]
    clusters = [ClusterSpec(100, 3), ClusterSpec(60, 2), ClusterSpec(40, 1)]
    if name == "merged":
        result = simulate_merged(jobs, clusters)
    else:
        result = simulate(jobs, clusters, get_policy(name, seed=3))
    assert_sane(result, jobs)


@needs_traces
def test_replay_isDeterministicForASeed() -> None:
    jobs = read_swf(HPC2N, limit=400)
    clusters = parse_clusters("120,60,60")
    assert run(jobs, clusters, "random", seed=5) == run(jobs, clusters, "random", seed=5)
    assert run(jobs, clusters, "random", seed=5) != run(jobs, clusters, "random", seed=6)


def test_replay_reportsTooWideJobsAsUnplaceable() -> None:
    jobs = [TraceJob(0, 0, 0, 10, 4, 10), TraceJob(1, 1, 0, 10, 9, 10)]
    summary = run(jobs, parse_clusters("8,4"), "late_binding")
    assert (summary["jobs"], summary["unplaceable"], summary["jobs_kept"]) == (1, 1, 2)
    assert summary["unplaceable_work_share"] == pytest.approx(90 / 130)
    merged = run(jobs, parse_clusters("8,4"), "merged")
    assert merged["jobs"] == 1  # the same kept jobs, though 9 would fit 12 merged processors


def test_lateBinding_waitsForTheFreeClusterInsteadOfQueueing() -> None:
    """Two clusters of 4; a long job holds one. Job 2 arrives while both are busy and goes to
    whichever frees first (the short one), where an early binding could have chosen wrong."""
    jobs = [
        TraceJob(0, 0, 0, 1000, 4, 1000),
        TraceJob(1, 1, 0, 10, 4, 1000),  # estimate far above its real 10 s
        TraceJob(2, 2, 1, 10, 4, 20),
    ]
    result = simulate(jobs, parse_clusters("4,4"), get_policy("late_binding"))
    starts = {o.job.job_id: (o.start, o.cluster) for o in result.outcomes}
    assert starts[2] == (10, 1)


def test_credits_arePaidAtTheClustersPrices() -> None:
    jobs = [TraceJob(0, 0, 0, 120, 2, 120)]
    summary = run(jobs, parse_clusters("4@5"), "late_binding")
    assert summary["credits_paid"] == 2 * 5 * 2  # 2 procs x 5 units x 2 minutes


@needs_traces
def test_command_printsJsonLast_andPlots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "p.png"
    code = run_sim_command(
        str(HPC2N), "120,60,60", "late_binding,round_robin,merged", True, str(png), 1, 300
    )
    assert code == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["policy"] == "late_binding"
    assert [r["policy"] for r in last["results"]] == ["late_binding", "round_robin", "merged"]
    for key in ("jobs", "unplaceable", "avg_wait_s", "avg_bsld", "utilization"):
        assert key in last
    assert set(last["by_width"]) == {"1", "2-16", "17-64", ">64"}
    assert png.stat().st_size > 0


def test_command_rejectsBadInput(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_sim_command("/nonexistent.swf", "4", None, False, None, 0, None) == 2
    assert run_sim_command("/nonexistent.swf", "4", "fastest", False, None, 0, None) == 2


def test_readSwf_namesTheFileAndLineOfWhatIsNotSwf(tmp_path: Path) -> None:
    short = tmp_path / "short.swf"
    short.write_text("; header\n" + swf_line(1, 0, 100, 4, 4, 200) + "\n0 seth 120 2\n")
    with pytest.raises(TraceError, match=r"short.swf line 3: an SWF job line has 18 fields"):
        read_swf(short)
    words = tmp_path / "words.swf"
    words.write_text(swf_line(1, 0, 100, 4, 4, 200).replace(" 100 ", " long ") + "\n")
    with pytest.raises(TraceError, match=r"words.swf line 1: SWF fields are whole numbers"):
        read_swf(words)
    noise = tmp_path / "noise.swf.gz"
    noise.write_bytes(b"\x00\xffnot gzip at all" * 10)
    with pytest.raises(TraceError, match=r"cannot be read as an SWF trace \(gzip\)"):
        read_swf(noise)
    empty = tmp_path / "empty.swf"
    empty.write_text("; only a header\n" + swf_line(1, 0, 0, 4, 4, 200) + "\n")
    with pytest.raises(TraceError, match="holds no job to replay"):
        read_swf(empty)


def test_command_refusesATraceItCannotRead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noise = tmp_path / "noise.swf.gz"
    noise.write_bytes(b"not gzip")
    assert run_sim_command(str(noise), "4", None, True, None, 0, None) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "noise.swf.gz cannot be read" in err
    assert "Traceback" not in err
