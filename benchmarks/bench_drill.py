"""Time-to-rollback and wall time of the sandbox drill (targets: dev TTR <= 30 s, wall < 30 s).

Each run is a fresh subprocess-free drill in this process (emulator start included in the wall
time). Predictions go through SafePredictor: "failed" is what callers saw (target 0), "w/o
failover" what plain calls would have lost. Prints medians over RUNS runs, dev (10 s
custom-metric alarms) beside staging (1-minute built-in AWS/SageMaker metric alarms).
Usage: .venv/bin/python benchmarks/bench_drill.py [RUNS]
"""

from __future__ import annotations

import statistics
import sys

from rollback.sandbox.simulation import run_drill


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    rows = []
    for stack in ("dev", "staging"):
        ttr, detect, wall, failed, raw_failed = [], [], [], [], []
        for seed in range(runs):
            report = run_drill(stack, "bad-canary", seed=seed + 1)
            if not report["rolled_back"]:
                raise SystemExit(f"{stack}: bad-canary did not roll back (seed {seed + 1})")
            ttr.append(report["ttr_seconds"])
            detect.append(report["detection_seconds"])
            wall.append(report["wall_seconds"])
            failed.append(report["predictions_failed"])
            raw_failed.append(report["predictions_failed_without_failover"])
        rows.append(
            (
                stack,
                report["metrics"],
                statistics.median(ttr),
                statistics.median(detect),
                statistics.median(wall),
                max(wall),
                sum(failed),
                sum(raw_failed),
            )
        )
    print(f"bad-canary drill, median of {runs} runs (simulated seconds for TTR/detection)")
    print(
        f"{'stack':<8} {'metrics':<8} {'TTR s':>7} {'detect s':>9} {'wall s':>7} {'max wall s':>11} "
        f"{'failed (all runs)':>18} {'w/o failover':>13}"
    )
    for stack, metrics, t, d, w, mw, f, rf in rows:
        print(f"{stack:<8} {metrics:<8} {t:>7.1f} {d:>9.1f} {w:>7.2f} {mw:>11.2f} {f:>18} {rf:>13}")
    print("targets: dev TTR <= 30 s (aim 15), wall < 30 s including emulator start")


if __name__ == "__main__":
    main()
