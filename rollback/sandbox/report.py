"""Drill report files: ``report.json`` and a picture of weights, error rate and the rollback moment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``drill.png`` into ``directory`` (created); return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    png_path = directory / "drill.png"
    plot(report, png_path)
    return json_path, png_path


def plot(report: dict[str, Any], path: Path) -> None:
    """Candidate/stable weights and the candidate error rate over simulated time, marks for events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = report.get("timeline") or []
    t = [p["t"] for p in timeline]
    fig, (ax_w, ax_e) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for role, color in (("stable", "tab:blue"), ("candidate", "tab:orange")):
        ax_w.step(t, [p["weights"].get(role, 0.0) for p in timeline], where="post", label=role, color=color)
    ax_w.set_ylabel("traffic share (%)")
    ax_w.set_ylim(-5, 105)
    ax_w.legend(loc="center right")
    # Per-second candidate traffic is a handful of requests at a 10 % canary: show 5 s buckets of
    # answered and failed requests instead, which is what the alarm's datapoints look at.
    bucket = 5.0
    answered: dict[float, float] = {}
    failed: dict[float, float] = {}
    for p in timeline:
        n = p.get("candidateRequests") or 0
        start = bucket * int(p["t"] // bucket)
        failures = n * (p.get("candidateErrorRate") or 0.0)
        failed[start] = failed.get(start, 0.0) + failures
        answered[start] = answered.get(start, 0.0) + n - failures
    starts = sorted(answered)
    ok = [answered[b] for b in starts]
    bad = [failed[b] for b in starts]
    ax_e.bar(starts, ok, width=bucket * 0.9, align="edge", color="tab:green", label="answered")
    ax_e.bar(starts, bad, width=bucket * 0.9, align="edge", bottom=ok, color="tab:red", label="5xx")
    ax_e.set_ylabel(f"candidate requests / {bucket:g} s")
    ax_e.legend(loc="upper right")
    if report.get("predictions_failed_without_failover") is not None:
        ax_e.set_title(
            f"callers saw {report.get('predictions_failed')} failed predictions "
            f"({report.get('predictions_failed_without_failover')} without failover to stable)",
            fontsize=9,
        )
    ax_e.set_xlabel("simulated seconds since the release")
    rollback_at = next((p["t"] for p in timeline if p["weights"].get("candidate", 1) == 0.0), None)
    if rollback_at is not None:
        for ax in (ax_w, ax_e):
            ax.axvline(rollback_at, color="black", linestyle="--", linewidth=1)
        ax_w.annotate(
            f"rollback (TTR {report.get('ttr_seconds')} s)",
            (rollback_at, 60),
            xytext=(5, 0),
            textcoords="offset points",
        )
    ax_w.set_title(
        f"mlrollback drill {report.get('scenario')} on {report.get('stack')} "
        f"({report.get('endpoint')}, {report.get('metrics')} metrics)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
