"""The drill's human summary says what happened, in order, in words (``--json`` has the fields)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from rollback.cli.rehearse import _summary


def _render(report: dict[str, Any]) -> str:
    console = Console(width=200, record=True)
    console.print(_summary(report))
    return " ".join(console.export_text().split())


def _report(**overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "scenario": "bad-canary",
        "stack": "dev",
        "endpoint": "fraud-scorer-dev",
        "strategy": "canary",
        "metrics": "custom",
        "weights_before": {"stable": 90.0, "candidate": 10.0},
        "weights_after": {"stable": 100.0, "candidate": 0.0},
        "alarm_events": [
            {"alarm": "fraud-scorer-dev-candidate-errors", "state": "ALARM", "t": 20.0},
            {"alarm": "fraud-scorer-dev-stable-errors", "state": "OK", "t": 10.0},
        ],
        "rolled_back": True,
        "ttr_seconds": 18.0,
        "predictions_failed": 0,
        "predictions_total": 1900,
        "predictions_failed_without_failover": 20,
        "failover": True,
        "quarantine": {"version": "v2"},
        "audit_items": 3,
        "notifications": 1,
        "rollout_state": "halted",
        "wall_seconds": 3.1,
    }
    report.update(overrides)
    return report


def test_a_rollback_reads_as_release_alarm_rollback_callers_records() -> None:
    text = _render(_report())
    assert "released stable 90% / candidate 10%" in text
    assert "alarm 20 s after the release: fraud-scorer-dev-candidate-errors" in text
    assert "stable-errors" not in text  # an OK transition is not an alarm
    assert "rolled back 18 s after the first failed prediction (time to rollback)" in text
    assert "callers saw 0 failed of 1900 predictions (20 would have failed without failover" in text
    assert "records v2 quarantined, 3 audit items, 1 notification " in text + " "
    assert text.index("released") < text.index("alarm") < text.index("rolled back") < text.index("callers")


def test_fault_injection_counts_from_the_fault_and_a_finished_rollout_reads_promoted() -> None:
    assert "after the injected fault" in _render(_report(scenario="fault-injection"))
    healthy = _render(
        _report(
            scenario="healthy",
            rolled_back=False,
            alarm_events=[],
            quarantine=None,
            rollout_state="ready-to-finalize",
            weights_after={"stable": 0.0, "candidate": 100.0},
            notifications=0,
        )
    )
    assert "promoted rollout ready-to-finalize; stable 0% / candidate 100%" in healthy
    assert "quarantined" not in healthy and "0 notifications" in healthy


def test_notes_from_the_drill_are_shown() -> None:
    text = _render(_report(notes=["rollout progress reset (was halted at step 1)"]))
    assert "note rollout progress reset (was halted at step 1)" in text
