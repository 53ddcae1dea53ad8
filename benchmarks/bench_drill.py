"""The sandbox drill under the honest timing model: p50/p95 of the four times over seeded runs.

Targets (issue "a sandbox as slow as AWS"), each over RUNS seeded runs (default 20):
- dev bad-canary and hung-canary: drain accepted p50 <= 15 s, p95 <= 25 s; 0 failed predictions
  in every run; callers' added latency while pinned to stable <= 50 ms p99;
- staging bad-canary: drain accepted p50 <= 75 s;
- healthy and flapping: 0 rollbacks;
- one drill from a fresh process < 30 s wall; RUNS drills in one process < 3 minutes.
The same runs without the client's circuit breaker are printed beside, for comparison.
Usage: .venv/bin/python benchmarks/bench_drill.py [RUNS]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from rollback.sandbox.drills import distribution, run_drills

ROOT = Path(__file__).resolve().parent.parent


def _fresh_start_wall() -> float:
    """Wall seconds of `mlrollback drill --stack dev --sandbox --json` in a new process."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", "from rollback.cli import main; main()", "drill", "--sandbox", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"fresh drill failed ({out.returncode}): {out.stderr[-500:]}")
    json.loads(out.stdout)
    return wall


def _row(label: str, report: dict, added: list[float]) -> str:
    s = report["summary"]

    def f(name: str, stat: str) -> str:
        value = s[name][stat]
        return "-" if value is None else f"{value:g}"

    pinned = distribution(added)
    return (
        f"{label:<34} {f('detected_seconds', 'p50'):>6} {f('detected_seconds', 'p95'):>6} "
        f"{f('drain_accepted_seconds', 'p50'):>6} {f('drain_accepted_seconds', 'p95'):>6} "
        f"{f('traffic_moved_seconds', 'p50'):>6} {f('traffic_moved_seconds', 'p95'):>6} "
        f"{f('exposure_failed_predictions', 'max'):>7} {f('exposure_failed_without_failover', 'p50'):>8} "
        f"{'-' if pinned['max'] is None else format(pinned['max'], 'g'):>9} "
        f"{report['rolled_back_runs']:>3}/{report['runs']:<3} {report['wall_seconds']:>7.1f}"
    )


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"sandbox drill, honest timing model, {runs} seeded runs each (seeds 1..{runs})")
    print("simulated seconds from the first bad prediction; nearest-rank percentiles")
    print(
        f"{'stack / scenario / client':<34} {'det50':>6} {'det95':>6} {'drn50':>6} {'drn95':>6} "
        f"{'mov50':>6} {'mov95':>6} {'failmax':>7} {'wofo50':>8} {'pin99max':>9} {'rb/runs':>7} {'wall s':>7}"
    )
    cases = [
        ("dev", "bad-canary", True),
        ("dev", "bad-canary", False),
        ("dev", "hung-canary", True),
        ("dev", "hung-canary", False),
        ("staging", "bad-canary", True),
        ("dev", "healthy", True),
        ("dev", "flapping", True),
        ("staging", "flapping", True),
    ]
    for stack, scenario, breaker in cases:
        report = run_drills(stack, scenario, runs=runs, seed=1, breaker=breaker)
        added = [r["pinned_p99"] for r in report["reports"] if r.get("pinned_p99") is not None]
        label = f"{stack} {scenario} {'breaker' if breaker else 'no breaker'}"
        print(_row(label, report, added), flush=True)
    print(f"fresh-process drill (dev bad-canary), wall: {_fresh_start_wall():.1f} s")
    print(
        "columns: det/drn/mov = detected / drain accepted / traffic moved (p50, p95); failmax = most "
        "failed predictions callers saw in one run; wofo50 = p50 of first-attempt failures (plain "
        "calls); pin99max = callers' added latency while pinned: the largest per-run p99 (ms); rb = runs "
        "that rolled back; wall = all runs"
    )


if __name__ == "__main__":
    main()
