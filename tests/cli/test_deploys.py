"""Deploy records: one idempotent `deploy` item per endpoint, found again by `revert --to-deployment`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infra.config import load_stack_file
from rollback.cli import app
from rollback.ops.deploy_records import record_deploys
from rollback.ops.stackfile import Release, StackDocument, write_atomic
from rollback.runtime import audit, names
from rollback.runtime.aws import Clients
from tests.cli.conftest import audit_table

runner = CliRunner()
SHA = "0123456789abcdef0123456789abcdef01234567"


def _deploys(aws: dict[str, Any], stack: str, physical: str) -> list[dict[str, Any]]:
    items, _ = audit.query(aws["dynamodb"], names.audit_table_name(stack), physical, limit=50)
    return [i for i in items if i["action"] == "deploy"]


def test_one_deploy_item_per_endpoint_carries_release_strategy_and_commit(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "staging")
    cfg = load_stack_file(project / "environments/Pulumi.staging.yaml", "staging")
    out = record_deploys(Clients(dynamodb=aws["dynamodb"]), cfg, actor="cli:ci", commit=SHA)
    assert [r["endpoint"] for r in out] == ["fraud-scorer-staging", "churn-predictor-staging"]
    churn = _deploys(aws, "staging", "churn-predictor-staging")
    assert len(churn) == 1
    assert churn[0]["detail"]["release"] == {
        "stable": "2025-06-01",
        "candidate": "2025-07-19",
        "shadow": None,
    }
    assert churn[0]["detail"]["strategy"] == "linear"
    assert churn[0]["detail"]["commit"] == SHA
    assert churn[0]["version"] == "2025-07-19" and churn[0]["actor"] == "cli:ci"
    assert churn[0]["at"].endswith("#" + out[1]["id"])


def test_rerun_with_the_same_commit_leaves_one_item_and_returns_its_id(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    cfg = load_stack_file(project / "environments/Pulumi.dev.yaml", "dev")
    clients = Clients(dynamodb=aws["dynamodb"])
    first = record_deploys(clients, cfg, actor="cli:ci", commit=SHA)
    again = record_deploys(clients, cfg, actor="cli:ci", commit=SHA)
    assert [r["recorded"] for r in first] == [True] * len(first)
    assert [r["recorded"] for r in again] == [False] * len(again)
    assert [r["id"] for r in again] == [r["id"] for r in first]
    assert len(_deploys(aws, "dev", "fraud-scorer-dev")) == 1
    other = record_deploys(clients, cfg, actor="cli:ci", commit="f" * 40)
    assert other[0]["recorded"] and len(_deploys(aws, "dev", "fraud-scorer-dev")) == 2


def test_revert_to_a_recorded_deployment_restores_the_stack_file_end_to_end(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    path = project / "environments/Pulumi.dev.yaml"
    deployed = path.read_text()
    recorded = runner.invoke(app, ["record-deploy", "--stack", "dev", "--commit", SHA, "--json"])
    assert recorded.exit_code == 0, recorded.output
    deployment = json.loads(recorded.stdout)["deployments"][0]
    assert deployment["release"] == {"stable": "v1", "candidate": "v2", "shadow": None}

    doc = StackDocument.load(path)
    doc.set_release("fraud-scorer", Release("v1", None))
    write_atomic(path, doc.render())
    assert path.read_text() != deployed

    result = runner.invoke(
        app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--to-deployment", deployment["id"], "--json"]
    )
    assert result.exit_code == 0, result.output
    assert path.read_text() == deployed
    reverts = [i for i in audit.query(aws["dynamodb"], names.audit_table_name("dev"), "fraud-scorer-dev")[0]]
    assert reverts[0]["action"] == "revert"
    assert reverts[0]["detail"]["release"] == deployment["release"]


def test_revert_finds_a_deployment_by_its_commit(project: Path, aws: dict[str, Any]) -> None:
    audit_table(aws, "dev")
    path = project / "environments/Pulumi.dev.yaml"
    deployed = path.read_text()
    assert runner.invoke(app, ["record-deploy", "--stack", "dev", "--commit", SHA]).exit_code == 0
    doc = StackDocument.load(path)
    doc.set_release("fraud-scorer", Release("v1", None))
    write_atomic(path, doc.render())
    result = runner.invoke(app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--to-deployment", SHA[:8]])
    assert result.exit_code == 0, result.output
    assert path.read_text() == deployed
    too_short = runner.invoke(app, ["revert", "-s", "dev", "-e", "fraud-scorer", "--to-deployment", SHA[:4]])
    assert too_short.exit_code == 3


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_record_deploy_takes_the_commit_from_git_and_history_shows_its_id(
    project: Path, aws: dict[str, Any]
) -> None:
    audit_table(aws, "dev")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    first = runner.invoke(app, ["record-deploy", "--stack", "dev"])
    assert first.exit_code == 0, first.output
    assert "recorded deploy" in first.output
    again = runner.invoke(app, ["record-deploy", "--stack", "dev"])
    assert "already recorded deploy" in again.output
    (item,) = _deploys(aws, "dev", "fraud-scorer-dev")
    assert item["detail"]["commit"] == head
    history = runner.invoke(app, ["history", "--stack", "dev", "--action", "deploy", "--json"])
    assert [r["action"] for r in json.loads(history.stdout)] == ["deploy"]
    table = runner.invoke(app, ["history", "--stack", "dev", "--action", "deploy"])
    assert item["at"].rsplit("#", 1)[-1] in table.output


def test_record_deploy_before_pulumi_up_says_the_stack_is_not_deployed(
    project: Path, aws: dict[str, Any]
) -> None:
    result = runner.invoke(app, ["record-deploy", "--stack", "dev", "--commit", SHA])
    assert result.exit_code == 3
    assert "run `pulumi up` first" in " ".join(result.output.split())


def test_history_rejects_an_unknown_action_naming_the_valid_ones(project: Path, aws: dict[str, Any]) -> None:
    result = runner.invoke(app, ["history", "--stack", "dev", "--action", "deploys"])
    assert result.exit_code == 2
    assert "--action 'deploys' is not one of: deploy, step" in " ".join(result.output.split())
