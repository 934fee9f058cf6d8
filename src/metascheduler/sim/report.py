"""Reports of runs: text for people, a chart of the policies side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metascheduler.billing import from_units


def text_report(summary: dict[str, Any]) -> str:
    s = summary
    lines = [
        f"policy {s['policy']} on clusters {s['clusters']}",
        f"  jobs kept {s['jobs_kept']}, simulated {s['jobs']}, unplaceable {s['unplaceable']} "
        f"({100 * s['unplaceable_work_share']:.2f}% of processor-seconds)",
        f"  avg wait {s['avg_wait_s']:.0f} s, avg bounded slowdown {s['avg_bsld']:.2f}, "
        f"max wait {s['max_wait_s']:.0f} s",
        f"  utilization {100 * s['utilization']:.1f}% (per cluster: "
        + ", ".join(f"{100 * u:.1f}%" for u in s["per_cluster_utilization"])
        + ")",
        f"  credits paid {from_units(s['credits_paid'])}",
        "  by width:  "
        + "  ".join(
            f"{w}: {v['jobs']} jobs, wait {v['avg_wait_s']:.0f} s, bsld {v['avg_bsld']:.1f}"
            for w, v in s["by_width"].items()
            if v["jobs"]
        ),
    ]
    return "\n".join(lines)


def comparison_table(summaries: Sequence[dict[str, Any]]) -> str:
    header = f"{'policy':<16}{'avg_bsld':>10}{'avg_wait_s':>12}{'utilization':>13}"
    rows = [
        f"{s['policy']:<16}{s['avg_bsld']:>10.2f}{s['avg_wait_s']:>12.0f}{s['utilization']:>13.3f}"
        for s in summaries
    ]
    return "\n".join([header, *rows])


def plot(summaries: Sequence[dict[str, Any]], path: str, title: str) -> None:
    """Bars of bounded slowdown, wait and utilization, one bar per policy."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in CI
    import matplotlib.pyplot as plt

    names = [s["policy"] for s in summaries]
    panels = [
        ("avg_bsld", "average bounded slowdown"),
        ("avg_wait_s", "average wait (s)"),
        ("utilization", "utilization"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.5))
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.bar(names, [s[key] for s in summaries], color="tab:blue")
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
