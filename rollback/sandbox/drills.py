"""Many seeded drills, one distribution: ``mlrollback drill --sandbox --runs N --seed S``.

One drill is one phase of the release against the alarm periods and one draw of every latency of
the timing model (:mod:`rollback.sandbox.timing`); a promise about time-to-rollback is a
distribution. :func:`run_drills` runs seeds ``S .. S+N-1`` (each a fresh emulator, as
:func:`~rollback.sandbox.simulation.run_drill`) and reports p50/p95/max of the four times, from
the first bad prediction (or the injected fault):

- ``detected_seconds``: a candidate alarm in ALARM;
- ``drain_accepted_seconds``: SageMaker accepted the weights update that drains the candidate;
- ``traffic_moved_seconds``: the update applied (the Updating window over): no request is routed
  to the candidate any more;
- ``exposure_failed_predictions`` (callers saw them fail) and ``exposure_failed_without_failover``
  (their first attempt failed: what plain calls would have lost).

Percentiles are nearest-rank (the value at rank ceil(p x n) of the sorted runs), so every figure is
one a run really produced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rollback.runtime.errors import ConfigError
from rollback.sandbox.simulation import SCENARIOS, percentile, run_drill
from rollback.sandbox.timing import TimingModel

TIMES: tuple[str, ...] = (
    "detected_seconds",
    "drain_accepted_seconds",
    "traffic_moved_seconds",
    "exposure_failed_predictions",
    "exposure_failed_without_failover",
)
MAX_RUNS = 500


def distribution(values: list[float | None]) -> dict[str, Any]:
    """p50/p95/max over the runs that have a value, and how many had none."""
    present = [float(v) for v in values if v is not None]
    return {
        "p50": percentile(present, 50),
        "p95": percentile(present, 95),
        "max": max(present) if present else None,
        "runs": len(present),
        "missing": len(values) - len(present),
    }


def check_runs(runs: int, seed: int) -> None:
    """ConfigError (exit 2) naming the flag, before anything starts."""
    if not 1 <= runs <= MAX_RUNS:
        raise ConfigError(f"--runs {runs}: give a number of drills from 1 to {MAX_RUNS}")
    if seed < 0:
        raise ConfigError(f"--seed {seed}: give a seed >= 0 (runs use seeds SEED .. SEED+RUNS-1)")


def run_drills(
    stack: str,
    scenario: str,
    *,
    runs: int,
    seed: int = 1,
    timing: TimingModel | None = None,
    progress: Callable[[int, int, dict[str, Any] | None], None] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run ``runs`` seeded drills and return the distribution report (``reports`` holds each run's
    key figures; ``first`` the whole report of the first run, for its picture)."""
    check_runs(runs, seed)
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    tell = progress or (lambda _i, _n, _report: None)
    reports: list[dict[str, Any]] = []
    first: dict[str, Any] | None = None
    for i in range(runs):
        tell(i, runs, reports[-1] if reports else None)
        report = run_drill(stack, scenario, seed=seed + i, timing=timing, **kwargs)
        first = first or report
        reports.append(
            {
                "seed": seed + i,
                "rolled_back": report["rolled_back"],
                "expectation_met": report["expectation_met"],
                "wall_seconds": report["wall_seconds"],
                "release_phase_seconds": report["timing"]["release_phase_seconds"],
                "sampled": report["timing"]["sampled"],
                "pinned_p99": report["added_latency_ms"]["pinned_p99"],
                "routed_p99": report["added_latency_ms"]["routed_p99"],
                **report["times"],
            }
        )
    tell(runs, runs, reports[-1] if reports else None)
    assert first is not None
    return {
        "scenario": scenario,
        "stack": stack,
        "endpoint": first["endpoint"],
        "strategy": first["strategy"],
        "metrics": first["metrics"],
        "runs": runs,
        "seed": seed,
        "timing": {"model": first["timing"]["model"], "ranges": first["timing"]["ranges"]},
        "summary": {name: distribution([r[name] for r in reports]) for name in TIMES},
        "rolled_back_runs": sum(1 for r in reports if r["rolled_back"]),
        "expectation_met_runs": sum(1 for r in reports if r["expectation_met"]),
        "expectation_met": all(r["expectation_met"] for r in reports),
        "wall_seconds": round(sum(r["wall_seconds"] for r in reports), 2),
        "wall_seconds_per_run": distribution([r["wall_seconds"] for r in reports]),
        "reports": reports,
        "first": first,
    }
