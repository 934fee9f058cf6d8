"""The ``sim`` command as a plain function: the typer CLI and ``python -m`` both call it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from metascheduler.placement import DEFAULT_POLICY

from .report import comparison_table, text_report
from .report import plot as draw
from .runner import parse_clusters, parse_policies, run
from .swf import TraceError, read_swf


def run_sim_command(
    trace: str,
    clusters: str,
    policy: str | None,
    as_json: bool,
    plot: str | None,
    seed: int,
    limit: int | None,
) -> int:
    """Replay ``trace`` on ``clusters`` and print the report; the exit code is returned.

    With ``as_json`` the last line is one JSON object: the run's figures, or with several
    policies a ``results`` list plus the default policy's figures at the top level.
    """
    try:
        specs = parse_clusters(clusters)
        names = parse_policies(policy)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not Path(trace).is_file():
        print(f"error: no trace file {trace}", file=sys.stderr)
        return 2
    try:
        jobs = read_swf(trace, limit)
    except TraceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summaries = []
    for name in names:
        summary = run(jobs, specs, name, seed)
        summaries.append(summary)
        print(text_report(summary), flush=True)
    if len(summaries) > 1:
        print(comparison_table(summaries))
    if plot:
        draw(summaries, plot, f"{Path(trace).name} on {clusters}")
        print(f"plot written to {plot}")
    if as_json:
        print(json.dumps(_json_object(summaries)))
    return 0


def _json_object(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    if len(summaries) == 1:
        return summaries[0]
    main = next((s for s in summaries if s["policy"] == DEFAULT_POLICY), summaries[0])
    return {**main, "results": summaries}
