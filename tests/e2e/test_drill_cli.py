"""End to end: `mlrollback drill --sandbox` per scenario, the real program and handlers in the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rollback.cli import app
from rollback.runtime import names
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
    times, sampled = report["times"], report["timing"]["sampled"]
    assert report["timing"]["model"] == "honest"
    assert 0 < times["detected_seconds"] < times["drain_accepted_seconds"] <= 25
    # Traffic moves only when SageMaker's Updating window after the weights call is over.
    assert times["traffic_moved_seconds"] == report["ttr_seconds"]
    assert times["traffic_moved_seconds"] - times["drain_accepted_seconds"] == pytest.approx(
        sampled["updating"], abs=1.0
    )
    # The rollback Lambda ran one delivery delay and one cold start after the alarm (1-s ticks).
    alarm_at = min(e["t"] for e in report["alarm_events"] if e["state"] == "ALARM")
    first_run = min(
        i["at"] for i in report["handler_invocations"] if i["function"] == "mlrollback-dev-rollback"
    )
    assert first_run - alarm_at == pytest.approx(sampled["event-delivery"] + sampled["cold-start"], abs=1.0)
    # Both delivery paths ran the function (the rule, the alarm's own action); one drain came of it.
    vias = {i["via"] for i in report["handler_invocations"] if i["function"] == "mlrollback-dev-rollback"}
    assert vias == {names.alarm_rule_name("dev"), "alarm-action"}
    # The client's failover to stable hid every candidate error from the callers, and its breaker
    # pinned them to stable after the first failures...
    assert report["predictions_failed"] == 0
    assert 0 < report["predictions_failed_without_failover"] <= 10
    assert report["failovers"] == report["predictions_failed_without_failover"]
    assert report["breaker_opened"] >= 1 and report["pinned_predictions"] > 100
    assert report["added_latency_ms"]["pinned_p99"] <= 50
    # ...while the mirrored copies still showed the candidate's errors to its alarms.
    assert report["alarm"] in ("fraud-scorer-dev-candidate-errors", "fraud-scorer-dev-candidate-latency")
    assert report["quarantine"]["alarm"] == report["alarm"]
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
    sampled = report["timing"]["sampled"]
    # From the forced state: delivery and a cold start, then the weights call; the forced state is
    # seen on the next 1-s tick and the delayed delivery runs on the tick after its due time.
    delay = sampled["event-delivery"] + sampled["cold-start"]
    assert delay <= report["times"]["drain_accepted_seconds"] <= delay + 2
    assert report["quarantine"]["alarm"] == "fraud-scorer-dev-candidate-errors"


def test_no_traffic_pauses_and_never_rolls_back() -> None:
    code, report = _drill("--scenario", "no-traffic")

    assert code == 0
    assert report["rolled_back"] is False and report["rollout_state"] == "paused"
    assert report["weights_after"] == report["weights_before"]


def test_flapping_below_the_sample_guard_never_rolls_back() -> None:
    """dev alarms on one 10-second datapoint: flapping is one slow failed request every other
    period, which the guard (two bad requests in a period) must not count."""
    code, report = _drill("--scenario", "flapping")

    assert code == 0
    assert report["rolled_back"] is False
    assert report["predictions_failed_without_failover"] > 0  # the isolated blips did happen
    assert report["predictions_failed"] == 0  # and the failover answered them from stable


@pytest.mark.parametrize("scenario", ["hung-canary", "no-variant-header"])
def test_a_hung_or_headerless_candidate_is_drained_and_callers_see_nothing(scenario: str) -> None:
    """Timeouts and errors without a variant header are ``unknown`` to the client: its breaker pins
    callers to stable on them, and the copies it mirrors with TargetVariant=candidate are what the
    candidate alarms see (docs/sandbox.md, attribution)."""
    code, report = _drill("--scenario", scenario)

    assert code == 0 and report["expectation_met"] and report["rolled_back"]
    assert report["predictions_failed"] == 0
    assert report["breaker_opened"] >= 1 and report["mirrored_predictions"] > 0
    assert report["times"]["drain_accepted_seconds"] <= 30


def test_a_hung_candidate_is_never_drained_by_plain_weight_routed_calls() -> None:
    """Without the breaker nothing attributes a timeout to the candidate (no header on a routed
    call): the 10-second custom alarms never see the hung canary. Why the mirror exists."""
    code, report = _drill("--scenario", "hung-canary", "--no-breaker")

    assert code == 1 and report["rolled_back"] is False
    assert report["predictions_failed"] == 0  # the attempt timeout + failover still answer callers
    # It gives up 300 simulated seconds after the first bad prediction, saying so.
    assert "nothing drained the candidate within 300" in report["notes"][0]
    assert report["simulated_seconds"] <= report["first_bad_at"] + 302


def test_a_drain_that_meets_a_canary_step_in_its_updating_window_waits_and_lands() -> None:
    code, report = _drill("--scenario", "step-during-update")

    assert code == 0 and report["expectation_met"]
    step_at = report["step_at"]
    accepted = report["first_bad_at"] + report["times"]["drain_accepted_seconds"]
    applied_step = next(c["t"] for c in report["weight_changes"] if c["kind"] == "applied")
    # The candidate turns bad with the step; the drain is refused until the step is applied.
    assert step_at <= report["first_bad_at"] < applied_step <= accepted
    assert report["predictions_failed"] == 0


def test_many_runs_report_the_distribution_of_the_four_times(tmp_path: Path) -> None:
    code, report = _drill("--runs", "2", "--seed", "5", "--report", str(tmp_path))

    assert code == 0 and report["runs"] == 2 and [r["seed"] for r in report["reports"]] == [5, 6]
    drains = sorted(r["drain_accepted_seconds"] for r in report["reports"])
    assert report["summary"]["drain_accepted_seconds"]["p50"] == drains[0]  # nearest rank
    assert report["summary"]["drain_accepted_seconds"]["max"] == drains[1]
    assert "first" not in report
    assert (tmp_path / "runs.png").stat().st_size > 1000 and (tmp_path / "drill.png").is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--scenario", "meteor"], "--scenario 'meteor': unknown scenario"),
        (["--runs", "0"], "--runs 0"),
        (["--seed", "-3"], "--seed -3"),
        (["--latency", "updating=99999"], "--latency 'updating=99999': out of range"),
        (["--latency", "warp=1"], "NAME one of"),
    ],
)
def test_bad_drill_flags_are_one_line_usage_errors_before_anything_starts(
    args: list[str], words: str
) -> None:
    result = CliRunner().invoke(app, ["drill", "--stack", "dev", "--sandbox", *args])

    assert result.exit_code == ConfigError.exit_code == 2, result.output
    assert words in result.output
    assert "emulator" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_sandbox_flags_without_sandbox_are_refused() -> None:
    result = CliRunner().invoke(app, ["drill", "--stack", "dev", "--runs", "5"])

    assert result.exit_code == 2 and "--runs only apply to the sandbox drill" in result.output


def test_a_report_path_that_is_a_file_is_refused_before_the_drill(tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    target.write_text("not a directory")

    result = CliRunner().invoke(app, ["drill", "--stack", "dev", "--sandbox", "--report", str(target)])

    assert result.exit_code == 2 and "exists and is not a directory" in result.output
    assert target.read_text() == "not a directory"
