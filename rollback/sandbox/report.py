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
    rates = [(p["t"], p["candidateErrorRate"]) for p in timeline if p.get("candidateErrorRate") is not None]
    ax_e.plot([r[0] for r in rates], [100 * r[1] for r in rates], ".", color="tab:red", label="candidate 5xx")
    ax_e.set_ylabel("candidate errors (%)")
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
