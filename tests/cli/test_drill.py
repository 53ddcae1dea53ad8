"""The real-stack rehearsal against moto: refusals, timeout, and a drain seen and undone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from infra.config import load_stack_file
from rollback.cli.rehearse import _summary
from rollback.ops.rehearsal import run_drill
from rollback.ops.rehearsal_gate import artifact_digest
from rollback.runtime import audit, names
from rollback.runtime.aws import Clients
from rollback.runtime.drain import drain
from rollback.runtime.errors import GateError
from rollback.runtime.settings import Settings
from tests.cli.conftest import audit_table, deploy_endpoint


def _clients(aws: dict[str, Any]) -> Clients:
    return Clients(**aws)


def test_drill_refuses_a_production_stack_without_the_flag(project: Path, aws: dict[str, Any]) -> None:
    cfg = load_stack_file(project / "environments/Pulumi.prod.yaml", "prod")
    with pytest.raises(GateError, match="--i-know-this-is-prod"):
        run_drill(_clients(aws), cfg, "fraud-scorer", timeout_seconds=1, i_know_this_is_prod=False)


def test_drill_that_sees_no_drain_records_a_failed_drill_and_resets_the_alarm(
    project: Path, aws: dict[str, Any]
) -> None:
    table = audit_table(aws, "staging")
    physical = deploy_endpoint(aws, "staging", weights={"stable": 90, "candidate": 10})
    cfg = load_stack_file(project / "environments/Pulumi.staging.yaml", "staging")
    report = run_drill(
        _clients(aws), cfg, "fraud-scorer", timeout_seconds=0.2, i_know_this_is_prod=False, poll_seconds=0.05
    )
    assert report["rolled_back"] is False and report["ttr_seconds"] is None
    alarm = names.alarm_name(physical, "candidate", "errors")
    assert aws["cloudwatch"].describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"] == "OK"
    items, _ = audit.query(aws["dynamodb"], table, physical)
    assert [(i["action"], i["outcome"], i["version"]) for i in items] == [("drill", "failed", "v2")]


def test_drill_measures_the_drain_then_restores_weights_and_clears_quarantine(
    project: Path, aws: dict[str, Any]
) -> None:
    table = audit_table(aws, "staging")
    physical = deploy_endpoint(aws, "staging", weights={"stable": 90, "candidate": 10})
    cfg = load_stack_file(project / "environments/Pulumi.staging.yaml", "staging")
    clients = _clients(aws)

    alarm = names.alarm_name(physical, "candidate", "errors")

    def lambda_reacts(_message: str, _elapsed: float) -> None:
        # Stands in for the deployed rollback Lambda reacting to the forced alarm (while it is in ALARM).
        state = aws["cloudwatch"].describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"]
        if (
            state == "ALARM"
            and aws["sagemaker"].describe_endpoint(EndpointName=physical)["ProductionVariants"][1][
                "CurrentWeight"
            ]
        ):
            drain(
                clients,
                Settings.for_stack("staging"),
                physical,
                actor="lambda:test",
                reason="alarm",
                kind="auto",
            )

    report = run_drill(
        clients,
        cfg,
        "fraud-scorer",
        timeout_seconds=10,
        i_know_this_is_prod=False,
        progress=lambda_reacts,
        poll_seconds=0.01,
    )
    assert report["rolled_back"] is True and report["ttr_seconds"] is not None
    times = report["times"]  # the sandbox's four times, as this path can see them
    assert times["detected_seconds"] == 0.0 and times["exposure_failed_predictions"] is None
    assert 0 <= times["drain_accepted_seconds"] <= times["traffic_moved_seconds"] == report["ttr_seconds"]
    assert report["weights_after"]["candidate"] == 0
    weights = {
        v["VariantName"]: v["CurrentWeight"]
        for v in aws["sagemaker"].describe_endpoint(EndpointName=physical)["ProductionVariants"]
    }
    assert weights == {"stable": 90.0, "candidate": 10.0}
    assert (
        aws["ssm"].get_parameters_by_path(Path=names.quarantine_prefix("staging"), Recursive=True)[
            "Parameters"
        ]
        == []
    )
    drills = [i for i in audit.query(aws["dynamodb"], table, physical)[0] if i["action"] == "drill"]
    assert drills[0]["outcome"] == "done" and drills[0]["detail"]["passed"] is True
    # what the rehearsal gate compares: the digest of the artifact the stack file declares for v2
    assert drills[0]["detail"]["artifact"] == artifact_digest(cfg.endpoint("fraud-scorer").versions["v2"])
    assert report["audit_id"] == drills[0]["at"].rsplit("#", 1)[-1]

    console = Console(record=True, width=200)
    console.print(_summary(report))
    text = console.export_text()
    assert "None" not in text
    assert f"forced into ALARM at 0 s: {alarm}" in text
    assert "s after the injected fault (time to rollback)" in text
    assert f"drill recorded as audit item {report['audit_id']}" in text
    assert "sends no predictions" in text and "wall time" in text


def test_drill_without_an_endpoint_rehearses_the_first_endpoint_with_a_candidate(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "staging")
    path = project / "environments/Pulumi.staging.yaml"
    # fraud-scorer (first) has no candidate; churn-predictor (second) has one
    path.write_text(path.read_text().replace("        candidate: v2\n", "", 1))
    deploy_endpoint(aws, "staging", "churn-predictor", weights={"stable": 75, "candidate": 25})
    cfg = load_stack_file(path, "staging")
    report = run_drill(
        _clients(aws), cfg, None, timeout_seconds=0.1, i_know_this_is_prod=False, poll_seconds=0.05
    )
    assert report["endpoint"] == "churn-predictor-staging" and report["version"] == "2025-07-19"


def test_drill_without_an_endpoint_and_no_candidate_anywhere_says_what_to_do(
    project: Path, aws: dict[str, Any]
) -> None:
    path = project / "environments/Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("        candidate: v2\n", "", 1))
    cfg = load_stack_file(path, "dev")
    with pytest.raises(GateError, match="no endpoint of stack dev declares a candidate"):
        run_drill(_clients(aws), cfg, None, timeout_seconds=0.1, i_know_this_is_prod=False)


# -- the `drill` command: exit codes per the README table, and CI's skip when nothing is released --


def _drill_cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from rollback.cli import app

    return CliRunner().invoke(app, ["drill", *args])


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--stack", "nope"], 3, "no such stack file; known stacks: dev, prod, staging"),
        (["--stack", "dev", "--scenario", "bogus"], 2, "--scenario 'bogus': unknown scenario"),
        (["--stack", "dev", "--endpoint", "nope"], 3, "no endpoint 'nope' (known: fraud-scorer"),
    ],
)
def test_sandbox_drill_refusals_exit_with_the_readme_codes(
    project: Path, args: list[str], code: int, words: str
) -> None:
    result = _drill_cli(*args, "--sandbox", "--json")
    assert result.exit_code == code, result.output
    assert words in result.stderr and result.stdout == ""


def _staging_after_finalize(project: Path) -> None:
    from rollback.ops.stackfile import Release, StackDocument

    path = project / "environments/Pulumi.staging.yaml"
    doc = StackDocument.load(path)
    doc.set_release("fraud-scorer", Release("v2", None))  # what `finalize --stack staging` leaves
    path.write_text(doc.render())


def test_ci_drill_step_passes_with_a_clear_line_when_staging_has_no_candidate(
    project: Path, aws: dict[str, Any]
) -> None:
    import json

    _staging_after_finalize(project)
    audit_table(aws, "staging")
    deploy_endpoint(aws, "staging", weights={"stable": 100, "candidate": 0}, stable="v2", candidate=None)

    skipped = _drill_cli(
        "--stack", "staging", "--endpoint", "fraud-scorer", "--skip-if-no-candidate", "--json"
    )
    plain = _drill_cli("--stack", "staging", "--endpoint", "fraud-scorer", "--json")

    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.stdout)
    assert report["skipped"] is True and "declares no candidate" in report["reason"]
    assert plain.exit_code == 8  # without the flag, a drill with nothing to drain is still refused


def test_skip_if_no_candidate_does_not_skip_a_declared_candidate(project: Path, aws: dict[str, Any]) -> None:
    audit_table(aws, "staging")
    # declared in the stack file, but drained live: the drill itself refuses (nothing is skipped)
    deploy_endpoint(aws, "staging", weights={"stable": 100, "candidate": 0})

    result = _drill_cli("--stack", "staging", "--endpoint", "fraud-scorer", "--skip-if-no-candidate")

    assert result.exit_code == 8, result.output
    assert "no candidate serving traffic" in result.stderr
