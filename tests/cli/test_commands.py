"""Every command through the CLI runner against moto: refusals, gates, exit codes, file edits."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rollback.cli import app
from rollback.cli.operate import rollout_line
from rollback.ops.stackfile import Release, StackDocument
from rollback.runtime import audit, clock, names
from rollback.runtime.errors import FollowUpError
from tests.cli.conftest import audit_table, deploy_endpoint, record_drill

runner = CliRunner()


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _flat(result: Any) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _audit_items(aws: dict[str, Any], stack: str, physical: str) -> list[dict[str, Any]]:
    items, _ = audit.query(aws["dynamodb"], names.audit_table_name(stack), physical, limit=50)
    return items


# -- preflight -----------------------------------------------------------------------------------


def test_preflight_fails_when_pulumi_up_would_undo_a_drain(project: Path, aws: dict[str, Any]) -> None:
    deploy_endpoint(
        aws, "dev", weights={"stable": 100, "candidate": 0}, progress={"stepIndex": 0, "state": "halted"}
    )
    result = _run("preflight", "--stack", "dev")
    assert result.exit_code == 8, result.output
    assert "candidate v2 is drained live (weight 0) but the stack declares it at 10%" in _flat(result)
    assert "fix: drop or replace the candidate" in _flat(result)


def test_preflight_passes_when_the_quarantine_keeps_the_drain(project: Path, aws: dict[str, Any]) -> None:
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    result = _run("preflight", "--stack", "dev", "--json")
    assert result.exit_code == 0, result.output
    codes = [f["code"] for f in json.loads(result.stdout)["findings"]]
    assert codes == ["candidate-held-at-zero"]


def test_preflight_refuses_to_repromote_a_quarantined_stable(project: Path, aws: dict[str, Any]) -> None:
    deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10}, quarantine="v1")
    result = _run("preflight", "--stack", "dev", "--json")
    assert result.exit_code == 8
    assert "re-promotes-quarantined" in [f["code"] for f in json.loads(result.stdout)["findings"]]


def test_preflight_refuses_to_reset_weights_mid_rollout(project: Path, aws: dict[str, Any]) -> None:
    # Live: v3 is at 50% in step 1; the stack file now declares v2 -> a new config resets to 10%.
    physical = deploy_endpoint(
        aws,
        "dev",
        weights={"stable": 50, "candidate": 50},
        candidate="v3",
        progress={"stepIndex": 1, "state": "baking"},
    )
    result = _run("preflight", "--stack", "dev")
    assert result.exit_code == 8
    assert (
        "while v3 serves 50% live (rollout step 2 of 3, baking); pulumi up would reset the candidate to 10%"
        in " ".join(result.output.split())
    )
    assert physical in _flat(result) or "fraud-scorer" in _flat(result)


def test_preflight_passes_mid_rollout_when_the_release_is_unchanged(
    project: Path, aws: dict[str, Any]
) -> None:
    deploy_endpoint(
        aws, "dev", weights={"stable": 50, "candidate": 50}, progress={"stepIndex": 1, "state": "baking"}
    )
    result = _run("preflight", "--stack", "dev")
    assert result.exit_code == 0, result.output


def test_preflight_warns_but_passes_when_a_release_adds_the_candidate_variant(
    project: Path, aws: dict[str, Any]
) -> None:
    # Live: stable only (no release yet); the dev stack file declares candidate v2.
    deploy_endpoint(aws, "dev", weights={"stable": 100}, candidate=None)
    result = _run("preflight", "--stack", "dev")
    assert result.exit_code == 0, result.output
    assert "warning fraud-scorer: pulumi up changes the variants of fraud-scorer-dev" in _flat(result)
    assert "from [stable] to [candidate, stable]" in _flat(result)
    assert "fix: watch the update with `mlrollback status`" in _flat(result)


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_stack_is_one_line_with_exit_code_3(project: Path, aws: dict[str, Any]) -> None:
    result = _run("status", "--stack", "qa")
    assert result.exit_code == 3
    assert "unknown stack 'qa'" in _flat(result) and "known: dev, prod, staging" in _flat(result)


def test_unknown_endpoint_is_not_found_naming_known_ones(project: Path, aws: dict[str, Any]) -> None:
    # exit 3 like an unknown stack (docs/runbook.md): the file is valid, the name asked for is not in it
    result = _run("rollback", "--stack", "dev", "--endpoint", "nope", "--reason", "x", "--yes")
    assert result.exit_code == 3
    assert "no endpoint 'nope'" in _flat(result) and "fraud-scorer" in _flat(result)


def test_endpoint_not_deployed_is_not_found(project: Path, aws: dict[str, Any]) -> None:
    audit_table(aws, "dev")
    result = _run("rollback", "--stack", "dev", "--endpoint", "fraud-scorer", "--reason", "x", "--yes")
    assert result.exit_code == 3, result.output
    assert "fraud-scorer-dev" in _flat(result)


def test_missing_credentials_exit_5(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = _run("preflight", "--stack", "dev")
    assert result.exit_code == 5, result.output
    assert "no AWS credentials" in _flat(result)


# -- rollback / status / history -------------------------------------------------------------------


def test_rollback_drains_the_candidate_and_records_who_and_why(project: Path, aws: dict[str, Any]) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    result = _run(
        "rollback", "--stack", "dev", "--endpoint", "fraud-scorer", "--reason", "p99 doubled", "--yes"
    )
    assert result.exit_code == 0, result.output
    variants = aws["sagemaker"].describe_endpoint(EndpointName=physical)["ProductionVariants"]
    assert {v["VariantName"]: v["CurrentWeight"] for v in variants}["candidate"] == 0
    drains = [i for i in _audit_items(aws, "dev", physical) if i["action"] == "drain"]
    assert [(d["actor"], d["reason"]) for d in drains] == [("cli:alice", "p99 doubled")]


def test_rollback_whose_notification_fails_says_the_drain_is_done_and_what_is_pending(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev", topic=False)
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    result = _run("rollback", "-s", "dev", "-e", "fraud-scorer", "-r", "p99 doubled", "--yes")
    assert result.exit_code == FollowUpError.exit_code, result.output
    assert "drain is done and recorded, but notify failed" in result.output
    variants = aws["sagemaker"].describe_endpoint(EndpointName=physical)["ProductionVariants"]
    assert {v["VariantName"]: v["CurrentWeight"] for v in variants}["candidate"] == 0


def test_rollback_without_yes_asks_and_a_no_changes_nothing(project: Path, aws: dict[str, Any]) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    result = runner.invoke(app, ["rollback", "-s", "dev", "-e", "fraud-scorer", "-r", "x"], input="n\n")
    assert result.exit_code != 0
    variants = aws["sagemaker"].describe_endpoint(EndpointName=physical)["ProductionVariants"]
    assert {v["VariantName"]: v["CurrentWeight"] for v in variants}["candidate"] == 10
    assert _audit_items(aws, "dev", physical) == []


def test_status_and_history_json(project: Path, aws: dict[str, Any]) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(
        aws, "dev", weights={"stable": 90, "candidate": 10}, progress={"stepIndex": 0, "state": "baking"}
    )
    assert _run("rollback", "-s", "dev", "-e", "fraud-scorer", "-r", "test", "--yes").exit_code == 0
    status = json.loads(_run("status", "--stack", "dev", "--json").stdout)
    ep = status["endpoints"][0]
    assert ep["percents"]["candidate"] == 0 and ep["quarantine"]["version"] == "v2"
    assert ep["recent"][0]["action"] == "drain"
    history = json.loads(_run("history", "--stack", "dev", "--json").stdout)
    assert [h["action"] for h in history] == ["drain"]


def test_reasons_with_brackets_are_printed_as_typed_not_read_as_markup(
    project: Path, aws: dict[str, Any]
) -> None:
    # Rich reads "[red]" as a style and raises on an unmatched "[/x]": operator text must be escaped.
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    reason = "[red]p99 doubled[/red], see [/runbook]"
    rolled = _run("rollback", "-s", "dev", "-e", "fraud-scorer", "-r", reason, "--yes")
    assert rolled.exit_code == 0, rolled.output
    assert reason in _flat(rolled)
    history = runner.invoke(app, ["history", "--stack", "dev"], env={"COLUMNS": "200"})
    assert history.exit_code == 0, history.output
    assert reason in _flat(history)
    status = runner.invoke(app, ["status", "--stack", "dev"], env={"COLUMNS": "200"})
    assert status.exit_code == 0, status.output
    assert reason in _flat(status)


def test_status_shows_an_idle_candidate_as_serving_the_stable_version(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, candidate=None)
    result = runner.invoke(app, ["status", "--stack", "dev"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "candidate" in line and "%" in line)
    assert "v1 (idle)" in row


# -- revert ------------------------------------------------------------------------------------------


def test_revert_drops_the_candidate_keeps_comments_records_and_prints_the_diff(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0})
    path = project / "environments/Pulumi.dev.yaml"
    before = path.read_text()
    result = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--reason", "bad canary")
    assert result.exit_code == 0, result.output
    assert "\n-        candidate: v2\n+        candidate: null\n" in result.output
    after = path.read_text()
    assert after == before.replace("        candidate: v2\n", "        candidate: null\n", 1)
    assert after.startswith("# Dev: small and fast.")
    reverts = [i for i in _audit_items(aws, "dev", physical) if i["action"] == "revert"]
    assert reverts[0]["detail"]["release"] == {"stable": "v1", "candidate": None, "shadow": None}


def test_revert_refuses_a_schema_incompatible_target_and_writes_nothing(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    schema = json.loads((project / "schemas/fraud-v2.json").read_text())
    schema["input"]["features"].reverse()
    (project / "schemas/fraud-v2.json").write_text(json.dumps(schema))
    before = (project / "environments/Pulumi.dev.yaml").read_text()
    result = _run("revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--to", "v2")
    assert result.exit_code == 8
    assert "v2 is not schema-compatible with v1" in _flat(result)
    assert "input.column[1]: clients send amount, the target expects device_age_days" in _flat(result)
    assert (project / "environments/Pulumi.dev.yaml").read_text() == before
    assert _audit_items(aws, "dev", physical) == []


def test_revert_to_a_recorded_deployment_restores_its_release(project: Path, aws: dict[str, Any]) -> None:
    table = audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    item = audit.AuditItem(
        endpoint=physical, action="deploy", actor="cli:bob", detail={"release": {"stable": "v1"}}
    )
    audit.append(aws["dynamodb"], table, item)
    deployment_id = item.at.rsplit("#", 1)[-1]
    result = _run("revert", "-s", "dev", "-e", "fraud-scorer", "--to-deployment", deployment_id, "--json")
    assert result.exit_code == 0, result.output
    assert StackDocument.load(project / "environments/Pulumi.dev.yaml").release("fraud-scorer") == Release(
        "v1"
    )
    missing = _run("revert", "-s", "dev", "-e", "fraud-scorer", "--to-deployment", "nope")
    assert missing.exit_code == 3 and "no audit item with id or commit 'nope'" in _flat(missing)


def test_revert_apply_without_pulumi_cli_says_how_to_install_it(
    project: Path, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    result = _run("revert", "-s", "dev", "-e", "fraud-scorer", "--apply")
    assert result.exit_code == 1
    assert "the Pulumi CLI is not installed" in " ".join(result.output.split())


@pytest.mark.pulumi_cli
def test_apply_runs_a_real_pulumi_up_through_the_automation_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The --apply path with the real engine, on a local backend and a program with no cloud resources."""
    import shutil
    import sys

    from rollback.ops import pulumi_cli
    from rollback.runtime.errors import MLRollbackError

    if shutil.which("pulumi") is None:
        pytest.skip("needs the Pulumi CLI engine (not installable on this machine)")
    from pulumi import automation as auto

    monkeypatch.setenv("PULUMI_BACKEND_URL", (tmp_path / "state").as_uri())
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-only")
    (tmp_path / "state").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        f"name: smoke\nruntime:\n  name: python\n  options:\n    virtualenv: {sys.prefix}\n"
    )
    (project / "__main__.py").write_text("import pulumi\npulumi.export('answer', 42)\n")
    auto.create_stack(stack_name="test", work_dir=str(project))

    first = pulumi_cli.up(project, "test")
    again = pulumi_cli.up(project, "test")

    assert first["result"] == "succeeded" and first["changes"].get("create") == 1
    assert again["result"] == "succeeded" and "create" not in again["changes"]
    (project / "__main__.py").write_text("raise SystemExit('broken program')\n")
    with pytest.raises(MLRollbackError, match="pulumi up failed for stack test"):
        pulumi_cli.up(project, "test")


# -- promote / finalize ------------------------------------------------------------------------------


def _prod_without_candidate(project: Path) -> None:
    doc = StackDocument.load(project / "environments/Pulumi.prod.yaml")
    doc.set_release("fraud-scorer", Release("v1", None))
    (project / "environments/Pulumi.prod.yaml").write_text(doc.render())


def _staging_ready(aws: dict[str, Any], *, drill: bool, alarm: bool = False) -> str:
    audit_table(aws, "staging")
    audit_table(aws, "prod")
    physical = deploy_endpoint(
        aws,
        "staging",
        weights={"stable": 0, "candidate": 100},
        steps=[10, 25, 50, 100],
        progress={"stepIndex": 3, "state": "ready-to-finalize"},
        alarm_states={"fraud-scorer-staging-candidate-latency": "ALARM"} if alarm else None,
    )
    deploy_endpoint(aws, "prod", weights={"stable": 100}, candidate=None)
    if drill:
        record_drill(aws, Path.cwd(), "staging", "v2", ttrSeconds=12)
    return physical


def test_promote_explains_every_failed_gate(project: Path, aws: dict[str, Any]) -> None:
    _prod_without_candidate(project)
    _staging_ready(aws, drill=False, alarm=True)
    before = (project / "environments/Pulumi.prod.yaml").read_text()
    result = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer")
    assert result.exit_code == 8
    text = " ".join(result.output.split())
    assert "alarms in ALARM on fraud-scorer-staging: fraud-scorer-staging-candidate-latency" in text
    assert "no passing drill of v2 in the 48 h before now" in text
    assert (project / "environments/Pulumi.prod.yaml").read_text() == before


def test_promote_refuses_an_unfinished_rollout(project: Path, aws: dict[str, Any]) -> None:
    _prod_without_candidate(project)
    _staging_ready(aws, drill=True)
    aws["ssm"].put_parameter(
        Name=names.rollout_progress_parameter("staging", "fraud-scorer-staging"),
        Value=json.dumps(
            {
                "planId": "abc123abc123",
                "stepIndex": 1,
                "stepStartedAt": "2026-01-01T00:00:00.000Z",
                "state": "baking",
            }
        ),
        Type="String",
        Overwrite=True,
    )
    result = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer")
    assert result.exit_code == 8 and "rollout of v2 is not finished (state baking)" in " ".join(
        result.output.split()
    )


def test_promote_copies_the_rehearsed_candidate_into_prod(project: Path, aws: dict[str, Any]) -> None:
    _prod_without_candidate(project)
    _staging_ready(aws, drill=True)
    result = _run("promote", "--from", "staging", "--to", "prod", "--endpoint", "fraud-scorer")
    assert result.exit_code == 0, result.output
    doc = StackDocument.load(project / "environments/Pulumi.prod.yaml")
    assert doc.release("fraud-scorer") == Release("v1", "v2")
    assert doc.strategy("fraud-scorer")["steps"] == [5, 10, 25, 50, 100]  # the target's own strategy
    promotes = [i for i in _audit_items(aws, "prod", "fraud-scorer-prod") if i["action"] == "promote"]
    assert promotes[0]["version"] == "v2" and promotes[0]["detail"]["source"] == "staging"


def test_finalize_makes_the_candidate_stable_only_when_ready(project: Path, aws: dict[str, Any]) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(
        aws, "dev", weights={"stable": 50, "candidate": 50}, progress={"stepIndex": 1, "state": "baking"}
    )
    refused = _run("finalize", "--stack", "dev", "--endpoint", "fraud-scorer")
    assert refused.exit_code == 8 and "is not finished (state baking" in _flat(refused)
    aws["ssm"].put_parameter(
        Name=names.rollout_progress_parameter("dev", "fraud-scorer-dev"),
        Value=json.dumps(
            {
                "planId": "abc123abc123",
                "stepIndex": 2,
                "stepStartedAt": "2026-01-01T00:00:00.000Z",
                "state": "ready-to-finalize",
            }
        ),
        Type="String",
        Overwrite=True,
    )
    done = _run("finalize", "--stack", "dev", "--endpoint", "fraud-scorer")
    assert done.exit_code == 0, done.output
    assert StackDocument.load(project / "environments/Pulumi.dev.yaml").release("fraud-scorer") == Release(
        "v2", None
    )


def test_clear_quarantine_deletes_the_record(project: Path, aws: dict[str, Any]) -> None:
    audit_table(aws, "dev")
    deploy_endpoint(aws, "dev", weights={"stable": 100, "candidate": 0}, quarantine="v2")
    result = _run("clear-quarantine", "-s", "dev", "-e", "fraud-scorer", "-r", "fixed", "--yes")
    assert result.exit_code == 0, result.output
    params = aws["ssm"].get_parameters_by_path(Path="/mlrollback/dev/quarantine", Recursive=True)[
        "Parameters"
    ]
    assert params == []


def test_status_for_people_shows_desired_weights_instances_and_the_bake(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    started = clock.iso(clock.now() - timedelta(seconds=30))
    deploy_endpoint(
        aws,
        "dev",
        weights={"stable": 90, "candidate": 10},
        progress={"stepIndex": 0, "state": "baking", "stepStartedAt": started},
    )
    result = runner.invoke(app, ["status", "--stack", "dev"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "desired" in result.output and "instances" in result.output
    assert "canary step 1 of 3 (10%), baking" in result.output
    baked = int(re.search(r"baking (\d+) s of (\d+) s", result.output).group(1))
    assert 29 <= baked <= 60


def test_rollout_line_says_not_started_and_ready_to_finalize() -> None:
    plan = {"candidate": "v2", "strategy": "linear", "steps": [20, 40, 60, 80, 100], "bakeSeconds": 300}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert "not started" in rollout_line(plan, {}, now)
    done = rollout_line(plan, {"stepIndex": 4, "state": "ready-to-finalize"}, now)
    assert done == "linear step 5 of 5 (100%), ready-to-finalize"
    assert rollout_line({"candidate": None, "steps": []}, {}, now) == ""


def test_history_for_people_fits_80_columns_with_whole_ids_and_reasons(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    physical = deploy_endpoint(aws, "dev", weights={"stable": 90, "candidate": 10})
    assert (
        _run(
            "rollback", "-s", "dev", "-e", "fraud-scorer", "-r", "p99 doubled since 14:00", "--yes"
        ).exit_code
        == 0
    )
    item_id = _audit_items(aws, "dev", physical)[0]["at"].rsplit("#", 1)[-1]
    result = runner.invoke(app, ["history", "--stack", "dev"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
    assert item_id in result.output  # copied into `revert --to-deployment`: never cut
    assert "p99 doubled since 14:00" in " ".join(result.output.split())
