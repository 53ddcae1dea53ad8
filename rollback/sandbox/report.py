"""Drill report files: ``report.json`` and pictures of one run (``drill.png``) and of many (``runs.png``).

``drill.png``: traffic shares over simulated time with the canary steps, the alarm, the drain
accepted and the traffic moved marked, the rollout's ``paused`` spans shaded and labelled; below,
the candidate's requests per alarm period (answered / failed) and its error rate against the
alarm's threshold. ``runs.png`` (``--runs N``): each run's four times, one dot per run, with p50 and
p95 marked. Every label is placed inside its axes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``drill.png`` (and ``runs.png`` for many runs); return the first two."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    body = {k: v for k, v in report.items() if k != "first"}
    json_path.write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
    png_path = directory / "drill.png"
    if "summary" in report:  # many runs: the first run's picture, and the distribution
        plot(report["first"], png_path)
        plot_runs(report, directory / "runs.png")
    else:
        plot(report, png_path)
    return json_path, png_path


def _label(ax: Any, x: float, text: str, y: float, color: str, ha: str | None = None) -> None:
    """A marker label at data x and axes-fraction y that never leaves the axes."""
    lo, hi = ax.get_xlim()
    right = x > lo + 0.6 * (hi - lo)
    ax.text(
        x,
        y,
        f" {text} ",
        transform=ax.get_xaxis_transform(),
        ha=ha or ("right" if right else "left"),
        va="center",
        fontsize=8,
        color=color,
        clip_on=True,
        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
    )


def plot(report: dict[str, Any], path: Path) -> None:
    """One run: weights and events above, the candidate's requests and error rate below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = report.get("timeline") or []
    t = [p["t"] for p in timeline]
    fig, (ax_w, ax_e) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for role, color in (("stable", "tab:blue"), ("candidate", "tab:orange")):
        ax_w.step(t, [p["weights"].get(role, 0.0) for p in timeline], where="post", label=role, color=color)
    ax_w.set_ylabel("traffic share (%)")
    ax_w.set_ylim(-5, 105)
    if t:
        ax_w.set_xlim(min(t), max(t) + 1)
    ax_w.legend(loc="upper left", fontsize=8)

    thresholds = report.get("thresholds") or {}
    bucket = float(thresholds.get("periodSeconds") or 5.0)
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
    ax_e.bar(starts, bad, width=bucket * 0.9, align="edge", bottom=ok, color="tab:red", label="failed")
    ax_e.set_ylabel(f"candidate requests / {bucket:g} s")
    ax_e.set_ylim(bottom=0)
    ax_e.legend(loc="upper left", fontsize=8)
    if thresholds.get("errorRate") is not None and starts:
        ax_r = ax_e.twinx()
        rates = [failed[b] / (answered[b] + failed[b]) if answered[b] + failed[b] else 0.0 for b in starts]
        ax_r.step([b + bucket for b in starts], rates, where="pre", color="tab:purple", linewidth=1)
        ax_r.axhline(float(thresholds["errorRate"]), color="tab:purple", linestyle=":", linewidth=1)
        ax_r.set_ylim(0, 1.05)
        ax_r.set_ylabel("candidate error rate", color="tab:purple", fontsize=8)
        level = min(0.95, float(thresholds["errorRate"]) / 1.05 + 0.05)
        _label(
            ax_r,
            starts[-1],
            f"errors alarm threshold {float(thresholds['errorRate']):g}",
            level,
            "tab:purple",
        )
    if report.get("predictions_failed_without_failover") is not None:
        ax_e.set_title(
            f"callers saw {report.get('predictions_failed')} failed predictions "
            f"({report.get('predictions_failed_without_failover')} without failover to stable; "
            f"{report.get('pinned_predictions', 0)} pinned to stable by the client's breaker)",
            fontsize=9,
        )
    ax_e.set_xlabel("simulated seconds since the release")

    # Spans where the rollout was paused, labelled.
    states = report.get("rollout_states") or []
    end = max(t) if t else 0.0
    for i, s in enumerate(states):
        if s.get("state") == "paused":
            stop = states[i + 1]["t"] if i + 1 < len(states) else end
            ax_w.axvspan(s["t"], stop, color="grey", alpha=0.15)
            _label(ax_w, (s["t"] + stop) / 2, "paused (too little traffic)", 0.5, "dimgrey", ha="center")

    times = report.get("times") or {}
    marks: list[tuple[float | None, str, str, str]] = []
    for change in report.get("weight_changes") or []:
        if change.get("kind") == "accepted" and (change.get("weights") or {}).get("candidate", 0) > 0:
            marks.append((change["t"], f"step to {change['weights']['candidate']:g}%", "tab:orange", ":"))
    alarms = [e for e in report.get("alarm_events") or [] if e.get("state") == "ALARM"]
    if alarms:
        first = min(alarms, key=lambda e: e["t"])
        marks.append((first["t"], f"alarm: {first['alarm'].rsplit('-', 1)[-1]}", "tab:red", "-"))
    origin = report.get("first_bad_at")
    if origin is not None and times.get("drain_accepted_seconds") is not None:
        marks.append(
            (
                origin + times["drain_accepted_seconds"],
                f"drain accepted ({times['drain_accepted_seconds']:g} s)",
                "black",
                "--",
            )
        )
    if origin is not None and times.get("traffic_moved_seconds") is not None:
        marks.append(
            (
                origin + times["traffic_moved_seconds"],
                f"traffic moved ({times['traffic_moved_seconds']:g} s)",
                "black",
                "-",
            )
        )
    heights = [0.88, 0.74, 0.60, 0.46, 0.32, 0.18]
    for i, (x, text, color, style) in enumerate(m for m in marks if m[0] is not None):
        for ax in (ax_w, ax_e):
            ax.axvline(x, color=color, linestyle=style, linewidth=1)
        _label(ax_w, float(x), text, heights[i % len(heights)], color)
    ax_w.set_title(
        f"mlrollback drill {report.get('scenario')} on {report.get('stack')} ({report.get('endpoint')}, "
        f"{report.get('metrics')} metrics, {(report.get('timing') or {}).get('model', 'instant')} timing, "
        f"seed {report.get('seed')})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_runs(report: dict[str, Any], path: Path) -> None:
    """Many runs: one row per time, one dot per run, p50 and p95 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [
        ("detected_seconds", "detected"),
        ("drain_accepted_seconds", "drain accepted"),
        ("traffic_moved_seconds", "traffic moved"),
    ]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for row, (key, _name) in enumerate(names):
        values = [r[key] for r in report["reports"] if r.get(key) is not None]
        ax.scatter(values, [row] * len(values), alpha=0.6, s=18)
        d = report["summary"][key]
        for stat, marker in (("p50", "|"), ("p95", "x")):
            if d[stat] is not None:
                ax.scatter([d[stat]], [row + 0.25], marker=marker, color="black", s=60)
                ax.annotate(
                    f"{stat} {d[stat]:g}",
                    (d[stat], row + 0.25),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=7,
                )
    ax.set_yticks(range(len(names)), [label for _k, label in names])
    ax.set_ylim(-0.5, len(names) - 0.2)
    ax.set_xlabel("simulated seconds from the first bad prediction")
    ax.set_title(
        f"{report['scenario']} on {report['stack']}: {report['runs']} runs (seeds {report['seed']}.."
        f"{report['seed'] + report['runs'] - 1}), {report['timing']['model']} timing model",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
