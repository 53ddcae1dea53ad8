"""End to end: `mlrollback drill --sandbox` per scenario, the real program and handlers in the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollback.cli import app
from rollback.runtime.errors import ConfigError

pytestmark = pytest.mark.slow


def _drill(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["drill", "--stack", "dev", "--sandbox", "--json", *args])
    assert result.stdout.strip().startswith("{"), result.output[-2000:]
    return result.exit_code, json.loads(result.stdout)


def test_bad_canary_is_drained_quarantined_audited_and_notified_once(tmp_path: Path) -> None:
    code, report = _drill("--report", str(tmp_path))

    assert code == 0 and report["expectation_met"] is True
    assert report["rolled_back"] is True
    assert report["weights_after"]["candidate"] == 0.0 and report["weights_after"]["stable"] == 100.0
    assert report["weights_before"]["candidate"] > 0
    assert 0 < report["ttr_seconds"] <= 30
    # The client's failover to stable hid every candidate error from the callers...
    assert report["predictions_failed"] == 0
    assert report["predictions_failed_without_failover"] > 0
    assert report["failovers"] == report["predictions_failed_without_failover"]
    # ...while the per-attempt metrics still showed them to the candidate alarm.
    assert report["alarm"] == "fraud-scorer-dev-candidate-errors"
    assert report["quarantine"]["alarm"] == "fraud-scorer-dev-candidate-errors"
    assert report["quarantine"]["version"] == "v2" and report["quarantine"]["variant"] == "candidate"
    deploys = [a for a in report["audit"] if a["action"] == "deploy"]
    assert [d["version"] for d in deploys] == ["v1", "v2"]  # stable-only deploy, then the release
    drains = [a for a in report["audit"] if a["action"] == "drain"]
    assert len(drains) == 1 and drains[0]["outcome"] == "done"
    assert report["notifications"] == 1
    assert "rolled back v2" in report["notification_subjects"][0]
    assert (tmp_path / "report.json").is_file() and (tmp_path / "drill.png").stat().st_size > 1000


def test_bad_canary_without_failover_lets_callers_see_the_candidate_errors() -> None:
    code, report = _drill("--no-failover")

    assert code == 0 and report["rolled_back"] is True
    assert report["failover"] is False and report["failovers"] == 0
    assert report["predictions_failed"] > 0
    assert report["predictions_failed"] == report["predictions_failed_without_failover"]


def test_no_failover_without_sandbox_is_refused_with_a_clear_message() -> None:
    result = CliRunner().invoke(app, ["drill", "--stack", "dev", "--no-failover"])

    assert result.exit_code == ConfigError.exit_code == 2  # a usage error, per the README table
    assert "--no-failover only applies to the sandbox drill" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # one line, no traceback


def test_healthy_rollout_walks_every_step_to_ready_to_finalize() -> None:
    code, report = _drill("--scenario", "healthy")

    assert code == 0
    assert report["rolled_back"] is False and report["ttr_seconds"] is None
    assert report["rollout_state"] == "ready-to-finalize"
    assert report["weights_after"]["candidate"] == 100.0
    steps = [a for a in report["audit"] if a["action"] == "step"]
    assert len(steps) >= 2


def test_fault_injection_drains_from_set_alarm_state() -> None:
    code, report = _drill("--scenario", "fault-injection")

    assert code == 0 and report["rolled_back"] is True
    assert report["predictions_failed"] == 0  # nothing was really failing: the alarm was forced
    assert report["ttr_seconds"] is not None and report["ttr_seconds"] <= 5
    assert report["quarantine"]["alarm"] == "fraud-scorer-dev-candidate-errors"


def test_no_traffic_pauses_and_never_rolls_back() -> None:
    code, report = _drill("--scenario", "no-traffic")

    assert code == 0
    assert report["rolled_back"] is False and report["rollout_state"] == "paused"
    assert report["weights_after"] == report["weights_before"]


def test_flapping_below_m_of_n_never_rolls_back() -> None:
    code, report = _drill("--scenario", "flapping")

    assert code == 0
    assert report["rolled_back"] is False
    assert report["predictions_failed_without_failover"] > 0  # the isolated bad datapoints did happen
    assert report["predictions_failed"] == 0  # and the failover answered them from stable


def test_unknown_scenario_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["drill", "--stack", "dev", "--sandbox", "--scenario", "meteor"])

    assert result.exit_code != 0
    assert "meteor" in str(result.exception) or "meteor" in result.output
